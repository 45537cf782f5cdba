"""label.txt reader/writer, official WIDER FACE annotations, the Dataset and its collate."""
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.labels import DroppedFacesWarning, LabelFormatError, read_labels, write_labels
from data.wider_gt import load_wider_gt
from data.wider_official import convert, main, official_entries, read_official_bbx
from data.widerface import WiderFaceDataset, clip_boxes_to_image, detection_collate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

VALID = """\
# 0--Parade/a.jpg
10 20 30 40
449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.246 425.893 0.0 538.357 431.491 0.0 0.82
78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 1--Handshaking/empty.jpg

# 2--Demonstration/b.jpg
0.5 1.5 2.5 3.5
"""


def write(tmp_path, text, name="label.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_valid_file_parses_every_face_form(tmp_path):
    entries = read_labels(write(tmp_path, VALID))
    assert [e[0] for e in entries] == ["0--Parade/a.jpg", "1--Handshaking/empty.jpg",
                                       "2--Demonstration/b.jpg"]
    a = entries[0][1]
    assert a.dtype == np.float32 and a.shape == (3, 15)
    np.testing.assert_array_equal(a[0], [10, 20, 40, 60] + [-1] * 10 + [-1])  # 4-field: no landmarks
    np.testing.assert_allclose(a[1], [449, 330, 571, 479, 488.906, 373.643, 542.089, 376.442,
                                      515.031, 412.83, 485.246, 425.893, 538.357, 431.491, 1])
    np.testing.assert_array_equal(a[2], [78, 221, 85, 229] + [-1] * 11)  # absent landmarks
    assert entries[1][1].shape == (0, 15) and entries[1][1].dtype == np.float32
    np.testing.assert_allclose(entries[2][1], [[0.5, 1.5, 3.0, 5.0] + [-1] * 11])


def test_crlf_and_byte_order_mark_are_accepted(tmp_path):
    text = VALID.replace("\n", "\r\n").encode()
    entries = read_labels(write(tmp_path, b"\xef\xbb\xbf" + text))
    assert entries[0][0] == "0--Parade/a.jpg" and len(entries[0][1]) == 3


@pytest.mark.parametrize("text, line, expected", [
    ("10 20 30 40\n# a/b.jpg\n", 1, "before any image header"),
    ("# a/b.jpg\n1 2 3 4\n#   \n", 3, "empty image path"),
    ("# a/b.jpg\n1 2 x 4\n", 2, "expected a number"),
    ("# a/b.jpg\n1 2 3 4\n1 2 nan 4\n", 3, "finite"),
    ("# a/b.jpg\n1 2 inf 4\n", 2, "finite"),
    ("# a/b.jpg\n1 2 3 4 5\n", 2, "wrong number of fields"),
    ("# a/b.jpg\n" + " ".join(["1"] * 21) + "\n", 2, "wrong number of fields"),
    ("# a/b.jpg\n1 2 3 4\n1 2 3 4 5 6 7", 3, "truncated line"),
    (b"# a/b.jpg\n1 2 3 4\n# c/\xff\xfe.jpg\n", 3, "not UTF-8"),
])
def test_malformed_files_raise_with_path_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, text)
    with pytest.raises(LabelFormatError) as info:
        read_labels(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert expected in message
    assert isinstance(info.value, ValueError)


def test_missing_label_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_labels(tmp_path / "nope.txt")


def test_degenerate_boxes_dropped_and_counted_once(tmp_path):
    text = "# a/b.jpg\n1 2 0 4\n1 2 3 -4\n5 6 7 8\n# c/d.jpg\n1 1 0 0\n"
    with pytest.warns(DroppedFacesWarning, match=r"dropped 3 face\(s\).*first at line 2") as record:
        entries = read_labels(write(tmp_path, text))
    assert len(record) == 1
    assert len(entries[0][1]) == 1 and len(entries[1][1]) == 0


def test_partial_landmarks_marked_absent_and_counted(tmp_path):
    line = "1 2 3 4 5 6 0 -1 -1 0 7 8 0 9 10 0 11 12 0 1"
    with pytest.warns(DroppedFacesWarning, match="1 face"):
        (_, t), = read_labels(write(tmp_path, "# a/b.jpg\n" + line + "\n"))
    np.testing.assert_array_equal(t[0, 4:], [-1] * 11)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for k in range(4):
        xy = rng.uniform(0, 500, (k, 2)).astype(np.float32)
        wh = rng.uniform(1, 80, (k, 2)).astype(np.float32)
        t = np.full((k, 15), -1, np.float32)
        t[:, :2], t[:, 2:4] = xy, xy + wh
        t[:, 4:14] = rng.uniform(0, 600, (k, 10))
        t[: k // 2, 14] = 1
        t[k // 2:, 4:14] = -1
        entries.append((f"{k}--Event/img_{k}.jpg", t))
    path = tmp_path / "out" / "label.txt"
    write_labels(path, entries)
    back = read_labels(path)
    assert [b[0] for b in back] == [e[0] for e in entries]
    for (_, t), (_, b) in zip(entries, back):
        np.testing.assert_allclose(b, t, rtol=1e-6, atol=1e-4)
    write_labels(path, entries, landmarks=False)
    for (_, t), (_, b) in zip(entries, read_labels(path)):
        np.testing.assert_allclose(b[:, :4], t[:, :4], rtol=1e-6, atol=1e-4)
        assert (b[:, 4:] == -1).all()


OFFICIAL = """\
0--Parade/0_Parade_marchingband_1_849.jpg
1
449 330 122 149 0 0 0 0 0 0 
0--Parade/0_Parade_Parade_0_452.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/x.jpg
2
1 2 3 4 2 0 1 0 2 1 
5 6 0 8 0 0 0 1 0 0 
"""


def test_official_bbx_reader_and_converter(tmp_path):
    path = write(tmp_path, OFFICIAL, "wider_face_train_bbx_gt.txt")
    ann = read_official_bbx(path)
    assert [a.image for a in ann] == ["0--Parade/0_Parade_marchingband_1_849.jpg",
                                      "0--Parade/0_Parade_Parade_0_452.jpg", "1--Handshaking/x.jpg"]
    np.testing.assert_array_equal(ann[0].boxes, [[449, 330, 122, 149]])
    assert ann[1].boxes.shape == (0, 4)
    np.testing.assert_array_equal(ann[2].attributes[0], [2, 0, 1, 0, 2, 1])
    out = tmp_path / "train" / "label.txt"
    with pytest.warns(DroppedFacesWarning, match="dropped 1"):
        assert convert(path, out) == 3
    back = read_labels(out)
    np.testing.assert_array_equal(back[0][1][0, :4], [449, 330, 571, 479])
    assert back[1][1].shape == (0, 15) and back[2][1].shape == (1, 15)
    assert (back[0][1][:, 4:] == -1).all()


def test_converter_cli(tmp_path, capsys):
    source = write(tmp_path, OFFICIAL.replace("5 6 0 8", "5 6 7 8"), "bbx.txt")
    main(["--annotations", str(source), "--out", str(tmp_path / "r" / "train" / "label.txt")])
    assert "3 images" in capsys.readouterr().out
    dataset_labels = read_labels(tmp_path / "r" / "train" / "label.txt")
    assert [len(t) for _, t in dataset_labels] == [1, 0, 2]


@pytest.mark.parametrize("text, line, expected", [
    ("a/b.jpg\nx\n", 2, "face count"),
    ("a/b.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4, "truncated"),
    ("a/b.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3, "expected 10"),
    ("a/b.jpg\n1\n1 2 3 q 0 0 0 0 0 0\n", 3, "non-numeric"),
    ("3\n1\n1 2 3 4 0 0 0 0 0 0\n", 1, "expected an image path"),
])
def test_official_bbx_malformed(tmp_path, text, line, expected):
    path = write(tmp_path, text, "bbx.txt")
    with pytest.raises(LabelFormatError, match=expected) as info:
        read_official_bbx(path)
    assert str(info.value).startswith(f"{path}:{line}:")


@pytest.mark.skipif(not (SHARED_DATA / "wider_val_gt").is_dir(), reason="official val gt absent")
def test_official_val_mat_converts_with_ground_truth(tmp_path):
    source = SHARED_DATA / "wider_val_gt" / "wider_face_val.mat"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedFacesWarning)
        entries = official_entries(source)
        convert(source, tmp_path / "val" / "label.txt")
    assert len(entries) == 3226 and sum(len(t) for _, t in entries) <= 39708
    assert entries[0][0].startswith("0--Parade/") and entries[0][0].endswith(".jpg")
    gt = load_wider_gt(tmp_path / "val" / "ground_truth")
    assert gt.num_images() == 3226
    assert len(read_labels(tmp_path / "val" / "label.txt")) == 3226


def make_root(tmp_path, images):
    """images: {relative path: (array or bytes, targets [n, 15])} under root/train."""
    split = tmp_path / "root" / "train"
    entries = []
    for rel, (content, targets) in images.items():
        path = split / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            cv2.imwrite(str(path), content)
        entries.append((rel, np.asarray(targets, np.float32).reshape(-1, 15)))
    write_labels(split / "label.txt", entries)
    return tmp_path / "root"


def face(x1, y1, x2, y2):
    return [x1, y1, x2, y2, x1 + 1, y1 + 1, x2 - 1, y1 + 1, (x1 + x2) / 2, (y1 + y2) / 2,
            x1 + 1, y2 - 1, x2 - 1, y2 - 1, 1]


def test_dataset_items_ids_and_conversions(tmp_path):
    gray = np.full((30, 40), 77, np.uint8)
    rgba = np.zeros((20, 25, 4), np.uint8)
    rgba[..., 2] = 200
    root = make_root(tmp_path, {
        "0--A/g.png": (gray, [face(2, 3, 12, 15)]),
        "0--A/rgba.png": (rgba, []),
    })
    ds = WiderFaceDataset(root, "train")
    assert len(ds) == 2 and ds.image_id(0) == ("0--A", "g") and ds.image_path(1).name == "rgba.png"
    image, targets = ds[0]
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8 and (image == 77).all()
    np.testing.assert_allclose(targets, [face(2, 3, 12, 15)])
    image, targets = ds[1]
    assert image.shape == (20, 25, 3) and targets.shape == (0, 15)
    with pytest.raises(IndexError):
        ds[2]


def test_dataset_clips_boxes_and_counts(tmp_path):
    root = make_root(tmp_path, {"e/a.png": (np.zeros((50, 60, 3), np.uint8),
                                            [face(-5, 10, 20, 30), face(50, 40, 70, 60),
                                             face(70, 60, 80, 70), face(1, 1, 5, 5)])})
    with pytest.warns(DroppedFacesWarning, match=r"clipped 2 box\(es\).*dropped 1"):
        ds = WiderFaceDataset(root, "train")
    _, t = ds[0]
    np.testing.assert_array_equal(t[:, :4], [[0, 10, 20, 30], [50, 40, 60, 50], [1, 1, 5, 5]])


def test_clip_boxes_to_image_matches_loop():
    rng = np.random.default_rng(1)
    t = np.zeros((50, 15), np.float32)
    t[:, :2] = rng.uniform(-50, 150, (50, 2))
    t[:, 2:4] = t[:, :2] + rng.uniform(1, 60, (50, 2))
    out, clipped, dropped = clip_boxes_to_image(t, 100, 80)
    expect = []
    for row in t:
        x1, y1, x2, y2 = min(max(row[0], 0), 100), min(max(row[1], 0), 80), \
            min(max(row[2], 0), 100), min(max(row[3], 0), 80)
        if x2 > x1 and y2 > y1:
            expect.append([x1, y1, x2, y2])
    np.testing.assert_array_equal(out[:, :4], expect)
    assert dropped == 50 - len(expect) and 0 < clipped <= len(expect)


def test_missing_and_corrupt_images_name_the_file(tmp_path):
    root = make_root(tmp_path, {"e/bad.jpg": (b"not a jpeg at all", [])})
    with pytest.raises(OSError, match="bad.jpg"):
        WiderFaceDataset(root, "train")
    (root / "train" / "images" / "e" / "bad.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="bad.jpg"):
        WiderFaceDataset(root, "train")
    with pytest.raises(FileNotFoundError, match="label.txt") as missing:
        WiderFaceDataset(root, "val")
    assert f"`python -m data.synthetic --out {root}`" in str(missing.value)  # the command that makes the data
    with pytest.raises(ValueError, match="split"):
        WiderFaceDataset(root, "test")


def test_corrupt_pixels_after_valid_header_name_the_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    root = make_root(tmp_path, {"e/cut.jpg": (jpeg.tobytes()[:20000], [])})
    ds = WiderFaceDataset(root, "train")
    with pytest.raises(OSError, match="cut.jpg"):
        ds[0]


def test_transform_rng_depends_only_on_seed_epoch_index(tmp_path):
    root = make_root(tmp_path, {f"e/{k}.png": (np.zeros((8, 8, 3), np.uint8), []) for k in range(3)})

    def transform(image, targets, rng):
        return rng.integers(0, 2**62)

    ds = WiderFaceDataset(root, "train", transform=transform, seed=5)
    first = [ds[i] for i in range(3)]
    assert first == [ds[i] for i in range(3)]
    assert first[0] == np.random.default_rng((5, 0, 0)).integers(0, 2**62)
    ds.set_epoch(1)
    assert first != [ds[i] for i in range(3)]
    loader = torch.utils.data.DataLoader(
        WiderFaceDataset(root, "train", transform=transform, seed=5), batch_size=None, num_workers=2)
    assert [int(v) for v in loader] == first


def test_detection_collate_shapes_and_mismatch():
    batch = [(torch.zeros(3, 8, 8), torch.ones(2, 15)), (np.zeros((3, 8, 8), np.float32),
                                                        np.zeros((0, 15), np.float32))]
    images, targets = detection_collate(batch)
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.float32
    assert [t.shape for t in targets] == [(2, 15), (0, 15)] and targets[1].dtype == torch.float32
    with pytest.raises(ValueError, match="share one shape"):
        detection_collate([(torch.zeros(3, 8, 8), torch.zeros(0, 15)),
                           (torch.zeros(3, 9, 8), torch.zeros(0, 15))])
