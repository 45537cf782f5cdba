# Face-detection course kit. Every target creates .venv (Python 3.11) from requirements.txt on first
# use and reuses it afterwards. The two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
SUBMISSION ?= assignments
RESULTS ?= outputs/grades/results.json
HW ?= retinaface
MODEL ?= retinaface

PARAMS ?=
HW ?= retinaface
SUBMISSIONS ?= submitted
GRADES ?= outputs/grades/class
JOBS ?= 2

.PHONY: demo test release check-release references solutions grade venv student-kit gradescope grade-class

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

## demo: the main job: embedded dataset -> train RetinaFace (MobileNet-0.25) on CPU -> WIDER AP
##       (make demo MODEL=dsfd: another homework's lite detector, into outputs/demo-<model>)
demo: $(STAMP)
	$(PY) -m utils.demo --model $(MODEL) --data outputs/data

## test: the kit's own tests (release in sync, grading isolation, solutions get full marks, ...)
test: $(STAMP)
	$(PY) -m utils.release check
	$(PY) -m pytest tests/ -q

## release: regenerate assignments/ from solutions/ with nbgrader (never edit assignments/ by hand)
release: $(STAMP)
	$(PY) -m utils.release generate

## check-release: fail if assignments/ differs from what solutions/ generates
check-release: $(STAMP)
	$(PY) -m utils.release check

## references: regenerate autograder/references/*.pt by running the solutions, then record the
##             oracles' answers the student bundle's public checks replay (<hw>-oracles.pt.xz) and
##             the solutions' calls into their dependencies that charge-once replays (<hw>-calls.pt.xz)
references: $(STAMP)
	$(PY) -m autograder.staff.make_references
	$(PY) -m autograder.staff.record_oracles
	$(PY) -m autograder.staff.record_calls

## solutions: execute a homework's solution notebooks into outputs/solutions/<hw>/
##            (make solutions HW=dsfd PARAMS="DEVICE='cuda'")
solutions: $(STAMP)
	$(PY) -m utils.run_notebooks --hw $(HW) --out outputs/solutions $(foreach p,$(PARAMS),--param $(p))

## grade: grade one submission folder laid out like assignments/ (make grade SUBMISSION=dir [HW=hw]);
##        without HW every homework found in the folder is graded
grade: $(STAMP)
	$(PY) -m pytest autograder/ --submission $(SUBMISSION) --results $(RESULTS) -q $(if $(filter command line,$(origin HW)),--hw $(HW)); \
	status=$$?; echo "results: $(RESULTS)"; [ $$status -le 1 ]

## student-kit: outputs/dist/$(HW)-student.zip: release, given code, public checks only (make student-kit HW=dsfd)
student-kit: $(STAMP)
	$(PY) -m utils.deploy student-kit --hw $(HW)

## gradescope: outputs/dist/$(HW)-autograder.zip for Gradescope (all checks; private: holds the solutions)
gradescope: $(STAMP)
	$(PY) -m utils.deploy gradescope --hw $(HW)

## grade-class: grade every submission in SUBMISSIONS (one folder or zip per student) into GRADES
grade-class: $(STAMP)
	$(PY) -m autograder.staff.batch --submissions $(SUBMISSIONS) --out $(GRADES) --hw $(HW) --jobs $(JOBS)
