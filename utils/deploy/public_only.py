"""Source filter for the student bundle: a homework's grading code without its hidden checks.

Works on the text of ``autograder/<hw>/*.py`` (comments and layout kept) with Python's ``ast``:

- a graded test whose decorator says ``public=False`` (``@graded(unit, points, title, public=False)``)
  is deleted; one defined inside a factory function becomes ``name = None`` (nothing to collect);
- a ``Case(..., public=False)`` inside a tuple or list literal is deleted; one built by a
  comprehension with a computed flag (``Case(..., public=seed < 2) for seed in ...``) keeps only the
  public ones (the flag becomes the comprehension's condition);
- a string equal to a hidden case's name inside a tuple or list literal is deleted (lists of names
  such as ``HIDDEN_CASES = ("...",)``); one assigned to a name (``KNOWN = "..."``) becomes ``None``.

Anything the filter cannot remove is caught afterwards by ``utils.deploy.student``, which imports
the filtered package and refuses a bundle that still holds a hidden case or test.
"""
from __future__ import annotations

import ast

HIDDEN_FLAG_POSITION = 3          # graded(unit, points, title, public)


class FilterError(ValueError):
    """Source the filter cannot make public-only (says file and line)."""


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return None


def _public_flag(call: ast.Call, position: int | None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "public":
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


class _Edits:
    """Byte-range replacements on a source text (ast offsets are UTF-8 byte offsets)."""

    def __init__(self, source: str) -> None:
        self.data = source.encode()
        self.line_starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.edits: list[tuple[int, int, bytes]] = []

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        """A definition with its decorators (from the indentation of its first line)."""
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        return self.offset(first, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def delete_element(self, node: ast.AST) -> None:
        """Delete a container element and the comma after it."""
        start, end = self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)
        k = end
        while k < len(self.data) and self.data[k:k + 1] in (b" ", b"\t", b"\n", b"\r"):
            k += 1
        if self.data[k:k + 1] == b",":
            end = k + 1
        self.edits.append((start, end, b""))

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text.encode()))

    def apply(self) -> str:
        """Apply the outermost edits: one inside another (a hidden case name inside a hidden test
        that is deleted whole) is dropped, whichever was found first."""
        outer = [e for e in self.edits
                 if not any(o is not e and o[0] <= e[0] and e[1] <= o[1] and (o[0], o[1]) != (e[0], e[1])
                            for o in self.edits)]
        out, last = self.data, None
        for start, end, text in sorted(set(outer), reverse=True):
            if last is not None and end > last:  # overlaps an edit already made
                raise FilterError(f"overlapping edits at bytes {start}-{end} and {last}")
            out = out[:start] + text + out[end:]
            last = start
        return out.decode()


def filter_source(source: str, filename: str, hidden_cases: set[str]) -> tuple[str, list[str]]:
    """(public-only source, what was removed) for one module of a homework's grading package."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    edits, removed = _Edits(source), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            marks = [d for d in node.decorator_list if _call_name(d) == "graded"
                     and _is_false(_public_flag(d, HIDDEN_FLAG_POSITION))]
            if marks:
                start, end = edits.span(node)
                nested = not isinstance(parents.get(node), ast.Module)
                edits.replace(start, end, f"{node.name} = None" if nested else "")
                removed.append(f"test {node.name}")
        elif _call_name(node) == "Case":
            flag = _public_flag(node, None)
            if flag is None or (isinstance(flag, ast.Constant) and flag.value is True):
                continue
            removed.append(f"case at {filename}:{node.lineno}")
            _remove_case(node, flag, parents, edits, filename)
        elif (isinstance(node, ast.Constant) and node.value in hidden_cases
              and isinstance(parents.get(node), (ast.Tuple, ast.List, ast.Set))):
            edits.delete_element(node)
            removed.append(f"name {node.value!r}")
        elif (isinstance(node, ast.Constant) and node.value in hidden_cases
              and isinstance(parents.get(node), ast.Assign) and parents[node].value is node):
            edits.replace(edits.offset(node.lineno, node.col_offset),
                          edits.offset(node.end_lineno, node.end_col_offset), "None")
            removed.append(f"name {node.value!r}")
    text = edits.apply()
    try:
        compile(text, filename, "exec")
    except SyntaxError as err:
        raise FilterError(f"{filename}: removing hidden checks broke the source ({err})") from None
    return text, removed


def _remove_case(call: ast.Call, flag: ast.expr, parents: dict, edits: _Edits, filename: str) -> None:
    parent = parents.get(call)
    if isinstance(parent, (ast.Tuple, ast.List, ast.Set)) and _is_false(flag):
        edits.delete_element(call)
        return
    if isinstance(parent, (ast.GeneratorExp, ast.ListComp)) and parent.elt is call:
        if _is_false(flag):
            edits.replace(edits.offset(parent.lineno, parent.col_offset),
                          edits.offset(parent.end_lineno, parent.end_col_offset), "()")
            return
        last = parent.generators[-1]
        tail = last.ifs[-1] if last.ifs else last.iter
        at = edits.offset(tail.end_lineno, tail.end_col_offset)
        condition = ast.get_source_segment(edits.data.decode(), flag)
        edits.replace(at, at, f" if ({condition})")
        return
    raise FilterError(f"{filename}:{call.lineno}: a hidden Case outside a tuple/list literal or a "
                      f"comprehension; list hidden cases in a tuple so the student bundle can drop them")
