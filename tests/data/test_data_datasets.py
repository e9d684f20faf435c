"""Miniature copies of every dataset's published format, read through the real datasets and loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from vidattn_test_media import frame_folder, pattern_video

from vidattn.data import (
    UCF101,
    ClipTransform,
    EgoGesture,
    EpicKitchens55,
    EpicKitchens100,
    ListDataset,
    SomethingSomethingV1,
    SomethingSomethingV2,
    build_dataset,
    build_sampler,
    build_test_transform,
    collate_clips,
)
from vidattn.data.datasets.ucf101 import paper_split

RAW = ClipTransform([], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # real transform: only /255


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Which pattern frame each time step shows (grey level read from the bottom-right corner)."""
    levels = (clip[0, :, -6:, -6:] * 255).mean(dim=(1, 2)).numpy()
    return [int(round((v - 10) / 7)) for v in levels]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ UCF-101


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    classes = ["ApplyEyeMakeup", "Basketball", "YoYo"]
    write(root / "ucfTrainTestlist/classInd.txt", "".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    train, test = [], []
    for ci, c in enumerate(classes, 1):
        for g in (1, 2, 3):
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            pattern_video(root / "UCF-101" / rel, n=20, fmt="avi_xvid")
            (test if g == 1 else train).append((rel, ci))
    write(root / "ucfTrainTestlist/trainlist01.txt", "".join(f"{r} {c}\n" for r, c in train))
    write(root / "ucfTrainTestlist/testlist01.txt", "".join(f"{r}\n" for r, _ in test))
    return root


def test_ucf101_official_split(ucf_root):
    train = UCF101(ucf_root, "train", fold=1, seed=0)
    test = UCF101(ucf_root, "test", fold=1, transform=RAW, sampler=build_sampler("tsn", 4, train=False))
    assert (len(train), len(test), train.num_classes) == (6, 3, 3)
    assert [r.label for r in test.records] == [0, 1, 2]  # from the folder name via classInd
    assert test.records[2].video_id == "YoYo/v_YoYo_g01_c01"
    item = test[1]
    assert item["label"] == 1 and item["clip"].shape == (3, 4, 48, 64)
    assert frame_ids(item["clip"]) == [2, 7, 12, 17]  # segment centres of 20 frames
    assert train[0]["clip"].shape == (3, 8, 224, 224)
    with pytest.raises(FileNotFoundError, match="testlist02.txt"):
        UCF101(ucf_root, "test", fold=2)


def test_ucf101_paper_protocol_on_disk(ucf_root):
    parts = {s: UCF101(ucf_root, s, protocol="paper", split_seed=0) for s in ("train", "val", "test")}
    ids = [r.video_id for ds in parts.values() for r in ds.records]
    assert len(ids) == len(set(ids)) == 9
    item = parts["train"][0]
    assert item["clip"].shape == (3, 16, 112, 112)  # 16 consecutive frames, 128x171 -> 112 crop


def test_ucf101_paper_split_sizes_groups_and_seed():
    rng = np.random.default_rng(0)
    videos, sizes = [], rng.integers(4, 8, size=(101, 25))
    while sizes.sum() > 13320:  # groups of 4-7 clips, 13,320 videos in all, as in UCF-101
        c, g = rng.integers(101), rng.integers(25)
        sizes[c, g] -= sizes[c, g] > 4
    for c in range(101):
        for g in range(25):
            videos += [f"C{c}/v_C{c}_g{g + 1:02d}_c{k + 1:02d}.avi" for k in range(sizes[c, g])]
    split = paper_split(videos, seed=0)
    assert {k: len(v) for k, v in split.items()} == {"test": 2701, "val": 2156, "train": 8463}
    groups = {k: {v.split("_c")[0] for v in vs} for k, vs in split.items()}
    tr, va, te = groups["train"], groups["val"], groups["test"]
    assert not (tr & va or tr & te or va & te)
    assert all(any(v.startswith(f"C{c}/") for v in split["test"]) for c in range(101))
    assert paper_split(videos, seed=0) == split and paper_split(videos, seed=1) != split


# ------------------------------------------------------------------------------------ Something-Something


def test_something_something_v1_frames(tmp_path):
    names = ["Approaching something", "Moving something from left to right", "Pushing something"]
    write(tmp_path / "something-something-v1-labels.csv", "\n".join(names) + "\n")
    write(tmp_path / "something-something-v1-train.csv", "11;Pushing something\n12;Approaching something\n")
    write(tmp_path / "something-something-v1-validation.csv", "13;Moving something from left to right\n")
    write(tmp_path / "something-something-v1-test.csv", "14\n")
    for vid, n in (("11", 10), ("12", 12), ("13", 16), ("14", 9)):
        frame_folder(tmp_path / "20bn-something-something-v1" / vid, n)
    train = SomethingSomethingV1(tmp_path, "train", num_frames=4, size=32)
    assert [r.label for r in train.records] == [2, 0] and train.classes == names
    assert train.flip_label_map[2] == 4 and train.flip_label_map[41] == 30
    assert not any(train.transform(np.zeros((2, 40, 40, 3), np.uint8), np.random.default_rng(s))[1]
                   for s in range(20))  # TSM recipe: no flips on Something-Something
    assert train[0]["clip"].shape == (3, 4, 32, 32)
    val = SomethingSomethingV1(tmp_path, "val", transform=RAW, sampler=build_sampler("tsn", 4, train=False))
    assert val[0]["label"] == 1 and frame_ids(val[0]["clip"]) == [2, 6, 10, 14]
    test = SomethingSomethingV1(tmp_path, "test", transform=RAW)
    assert test[0]["label"] == -1 and test[0]["video_id"] == "14"


def test_something_something_v2_webm(tmp_path):
    labels = {"Pushing something from left to right": "0", "Holding something next to something": "1"}
    write(tmp_path / "something-something-v2-labels.json", json.dumps(labels))
    entries = [{"id": "78687", "label": "holding potato next to vicks",
                "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks"]},
               {"id": "42", "label": "pushing a pen from left to right",
                "template": "Pushing [something] from left to right", "placeholders": ["a pen"]}]
    write(tmp_path / "something-something-v2-train.json", json.dumps(entries))
    write(tmp_path / "test.json", json.dumps([{"id": "7"}]))  # short file names accepted too
    for vid in ("78687", "42", "7"):
        pattern_video(tmp_path / "20bn-something-something-v2" / vid, n=16, fmt="webm_vp9")
    centres = build_sampler("tsn", 8, train=False)
    train = SomethingSomethingV2(tmp_path, "train", transform=RAW, sampler=centres)
    assert [r.label for r in train.records] == [1, 0]
    assert train.records[0].meta["placeholders"] == ["potato", "vicks"]
    assert frame_ids(train[0]["clip"]) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert SomethingSomethingV2(tmp_path, "test", transform=RAW)[0]["label"] == -1
    with pytest.raises(FileNotFoundError, match="validation.json"):
        SomethingSomethingV2(tmp_path, "val")


# ------------------------------------------------------------------------------------------------ EgoGesture


def test_egogesture_segments_and_subject_split(tmp_path):
    for subject, group_rows in ((3, "5,2,9\n83,12,20\n"), (1, "1,1,6\n")):
        write(tmp_path / f"labels-final-revised1/subject{subject:02d}/Scene1/Group1.csv", group_rows)
        frame_folder(tmp_path / f"images/Subject{subject:02d}/Scene1/Color/rgb1", 20, template="{:06d}.jpg")
    centres = build_sampler("tsn", 4, train=False)
    train = EgoGesture(tmp_path, "train", transform=RAW, sampler=centres)
    val = EgoGesture(tmp_path, "val", transform=RAW)
    assert len(EgoGesture(tmp_path, "test")) == 0 and train.num_classes == 83
    assert [r.label for r in train.records] == [4, 82] and [r.label for r in val.records] == [0]
    # Segment 12..20 (1-based, inclusive) = frames 11..19 (0-based): 9 frames, tick 2.25.
    item = train[1]
    assert item["video_id"] == "Subject03/Scene1/rgb1/12-20"
    assert frame_ids(item["clip"]) == [11 + int(2.25 / 2 + 2.25 * i) for i in range(4)]


# ------------------------------------------------------------------------------------------------ EPIC


EPIC55_HEADER = ("uid,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,"
                 "participant_id,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")


def test_epic55_frames_verb_noun_and_unlabelled_test(tmp_path):
    write(tmp_path / "annotations/EPIC_train_action_labels.csv", EPIC55_HEADER
          + "0,P01_01,open door,00:00:00.01,00:00:00.20,3,12,P01,open,3,door,8,['door'],[8]\n"
          + "1,P01_01,take cup,00:00:00.20,00:00:00.30,13,20,P01,take,0,cup,13,['cup'],[13]\n")
    write(tmp_path / "annotations/EPIC_test_s2_timestamps.csv",
          "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
          "9001,P02,P02_01,00:00:00.01,00:00:00.10,2,8\n")
    frame_folder(tmp_path / "frames_rgb_flow/rgb/train/P01/P01_01", 20, template="frame_{:010d}.jpg")
    frame_folder(tmp_path / "frames_rgb_flow/rgb/test/P02/P02_01", 10, template="frame_{:010d}.jpg")
    centres = build_sampler("tsn", 2, train=False)
    train = EpicKitchens55(tmp_path, "train", transform=RAW, sampler=centres)
    assert train.num_classes == (125, 331) and train.classes["verb"][3] == "open"
    item = train[0]
    assert item["label"].tolist() == [3, 8] and item["label"].dtype == torch.long
    assert frame_ids(item["clip"]) == [2 + 2, 2 + 7]  # frames 3..12 -> 0-based 2..11, centres
    test = EpicKitchens55(tmp_path, "test_s2", transform=RAW)
    assert test[0]["label"].tolist() == [-1, -1] and test[0]["video_id"] == "9001"
    batch = collate_clips([train[0], train[1]])
    assert batch["label"].shape == (2, 2)


def test_epic100_video_source_uses_timestamps(tmp_path):
    header = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
              "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")
    write(tmp_path / "EPIC_100_validation.csv", header
          + "P01_01_0,P01,P01_01,00:00:00.00,00:00:00.40,00:00:00.80,11,20,wash cup,wash,2,cup,13,"
          + "\"['cup']\",[13]\n")
    verbs = "id,key,instances,category\n0,take,[],x\n1,put,[],x\n2,wash,[],x\n"
    write(tmp_path / "EPIC_100_verb_classes.csv", verbs)
    pattern_video(tmp_path / "P01/videos/P01_01.MP4", n=30, fmt="mp4_h264")  # 25 fps: 0.4-0.8 s = 10..20
    (tmp_path / "P01/videos/P01_01.mp4").rename(tmp_path / "P01/videos/P01_01.MP4")
    ds = EpicKitchens100(tmp_path, "val", source="video", transform=RAW,
                         sampler=build_sampler("tsn", 2, train=False))
    assert ds.classes["verb"][:3] == ["take", "put", "wash"] and ds.num_classes == (97, 300)
    item = ds[0]
    assert item["video_id"] == "P01_01_0" and item["label"].tolist() == [2, 13]
    assert frame_ids(item["clip"]) == [12, 17]


# ------------------------------------------------------------------------------- list files, errors, loaders


def test_mmaction_list_files_video_and_frames(tmp_path, media):
    pattern_video(tmp_path / "vids/a", n=10, fmt="mp4_h264")
    write(tmp_path / "train.txt", "vids/a.mp4 3\n")
    frame_folder(tmp_path / "rawframes/b", 7, template="img_{:05d}.jpg")
    write(tmp_path / "frames.txt", "rawframes/b 7 1\n")
    videos = build_dataset("list", tmp_path, "train", num_frames=4, size=32)
    assert videos.records[0].label == 3 and videos.num_classes == 4
    assert videos[0]["clip"].shape == (3, 4, 32, 32)
    frames = ListDataset(tmp_path, "val", list_file=tmp_path / "frames.txt", mode="frames", transform=RAW)
    assert frames[0]["label"] == 1 and frames[0]["video_id"] == "rawframes/b"
    write(tmp_path / "bad.txt", "vids/a.mp4 three\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: cannot parse"):
        ListDataset(tmp_path, list_file=tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("no_such_dataset", tmp_path)


def test_multi_view_test_output(media, tmp_path):
    write(tmp_path / "l.txt", f"{media['avi_xvid']} 0\n")
    ds = ListDataset(tmp_path, "test", list_file=tmp_path / "l.txt",
                     sampler=build_sampler("tsn", 4, train=False, num_clips=2),
                     transform=build_test_transform(32, crops=3))
    clip = ds[0]["clip"]
    assert clip.shape == (6, 3, 4, 32, 32)  # 2 clips x 3 crops, clip-major


def test_seeded_sampling_is_worker_independent(media, tmp_path):
    write(tmp_path / "l.txt", "".join(f"{media['webm_vp9']} 0\n" for _ in range(4)))
    ds = ListDataset(tmp_path, list_file=tmp_path / "l.txt", transform=RAW, seed=5, num_frames=4)
    first = [frame_ids(ds[i]["clip"]) for i in range(4)]
    assert first == [frame_ids(ds[i]["clip"]) for i in range(4)]
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
    loaded = [frame_ids(c) for b in loader for c in b["clip"]]
    assert loaded == first
    ds.set_epoch(1)
    assert [frame_ids(ds[i]["clip"]) for i in range(4)] != first


def test_skip_policy_counts_bad_files_across_workers(tmp_path, media):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    rows = [media["avi_xvid"], bad, media["mp4_h264"], tmp_path / "missing.avi", media["webm_vp9"], bad]
    write(tmp_path / "l.txt", "".join(f"{p} 0\n" for p in rows))
    ds = ListDataset(tmp_path, list_file=tmp_path / "l.txt", num_frames=4, size=32, on_error="skip")
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert sum(b["num_skipped"] for b in batches) == 3
    assert sum(len(b["video_id"]) for b in batches) == 3
    last = batches[-1]  # (webm, broken): one kept
    assert last["clip"].shape == (1, 3, 4, 32, 32) and last["num_skipped"] == 1
    strict = ListDataset(tmp_path, list_file=tmp_path / "l.txt", num_frames=4, size=32)
    with pytest.raises(Exception, match="broken.mp4"):
        list(DataLoader(strict, batch_size=2, num_workers=2, collate_fn=collate_clips))
    all_bad = collate_clips([None, None])
    assert all_bad["clip"] is None and all_bad["num_skipped"] == 2


def test_label_outside_the_classes_is_an_error_naming_file_and_line(tmp_path, media):
    write(tmp_path / "l.txt", f"{media['avi_xvid']} 0\n{media['avi_xvid']} 5\n")
    with pytest.raises(ValueError, match=r"l.txt:2: label 5 is outside \[0, 2\)"):
        ListDataset(tmp_path, list_file=tmp_path / "l.txt", classes=["a", "b"])
    ds = ListDataset(tmp_path, list_file=tmp_path / "l.txt")
    with pytest.raises(ValueError, match=r"l.txt:2: label 5 is outside \[0, 4\) \(data.num_classes=4\)"):
        ds.check_labels(4, "data.num_classes")
    write(tmp_path / "neg.txt", f"{media['avi_xvid']} -3\n")
    with pytest.raises(ValueError, match=r"neg.txt:1: label -3"):
        ListDataset(tmp_path, list_file=tmp_path / "neg.txt", classes=["a"])


def test_mmaction_multi_label_and_offset_lists(tmp_path, media, caplog):
    import logging

    write(tmp_path / "ml.txt", f"{media['avi_xvid']} 0 2\n{media['mp4_h264']} 1\n")
    with pytest.raises(ValueError, match=r"ml.txt:2: 1 labels where line 1 has 2; .*multi_class: true"):
        ListDataset(tmp_path, list_file=tmp_path / "ml.txt")
    ds = ListDataset(tmp_path, list_file=tmp_path / "ml.txt", multi_class=True, num_classes=4, num_frames=4,
                     size=32)
    batch = collate_clips([ds[0], ds[1]])
    assert batch["label"].tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    # offset rawframes: dir offset total label = frames offset+1 .. offset+total (start_index 1)
    frame_folder(tmp_path / "rawframes/c", 12, template="img_{:05d}.jpg")
    write(tmp_path / "off.txt", "rawframes/c 6 4 2\n")
    with caplog.at_level(logging.WARNING):
        ListDataset(tmp_path, list_file=tmp_path / "off.txt", mode="frames")
    assert "off.txt:1: 4 fields" in caplog.text and "with_offset: true" in caplog.text
    off = ListDataset(tmp_path, list_file=tmp_path / "off.txt", mode="frames", with_offset=True, transform=RAW,
                      sampler=build_sampler("tsn", 4, train=False))
    sample = off[0]
    assert sample["label"] == 2 and off.num_classes == 3
    assert frame_ids(sample["clip"]) == [6, 7, 8, 9]


def test_list_class_count_is_the_union_of_the_splits(tmp_path, media):
    write(tmp_path / "train.txt", f"{media['avi_xvid']} 0\n{media['avi_xvid']} 4\n")
    write(tmp_path / "test.txt", f"{media['avi_xvid']} 1\n")
    assert ListDataset(tmp_path, "test").num_classes == 5 == ListDataset(tmp_path, "train").num_classes


# ------------------------------------------------------------------------------------------------ Kinetics


def test_kinetics_csv_and_both_folder_layouts(tmp_path, caplog):
    import logging

    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    write(tmp_path / "annotations/train.csv", header
          + '"tying knot (not on a tie)",abc-_12,14,24,train,0\n'
          + "abseiling,0347ZoDXyP0,95,105,train,0\n"
          + "abseiling,takenDown1,0,10,train,0\n")  # not on disk
    write(tmp_path / "annotations/validate.csv", "label,youtube_id,time_start,time_end,split\n"
          + '"tying knot (not on a tie)",v1,3,13,val\n')
    write(tmp_path / "annotations/test.csv", "youtube_id,time_start,time_end,split\nt1,0,10,test\n")
    # train: per-class folders (crawler spelling of the label); val and test: flat (the CVDF tarballs)
    pattern_video(tmp_path / "train/tying_knot_not_on_a_tie/abc-_12_000014_000024", n=16, fmt="mp4_h264")
    pattern_video(tmp_path / "train/abseiling/0347ZoDXyP0_000095_000105", n=16, fmt="mp4_h264")
    pattern_video(tmp_path / "val/v1_000003_000013", n=16, fmt="mp4_h264")
    frame_folder(tmp_path / "test/t1_000000_000010", 8, template="img_{:05d}.jpg")
    centres = build_sampler("tsn", 4, train=False)
    with caplog.at_level(logging.WARNING, logger="vidattn.data.datasets.kinetics"):
        train = build_dataset("kinetics400", tmp_path, "train", transform=RAW, sampler=centres)
    assert train.classes == ["abseiling", "tying knot (not on a tie)"]  # sorted labels of train.csv
    assert [(r.video_id, r.label) for r in train.records] == [("abc-_12_000014_000024", 1),
                                                             ("0347ZoDXyP0_000095_000105", 0)]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "1 of 3 videos listed in train.csv" in warnings[0] and "takenDown1" in warnings[0]
    item = train[1]
    assert item["label"] == 0 and frame_ids(item["clip"]) == [2, 6, 10, 14]
    val = build_dataset("kinetics700", tmp_path, "val", transform=RAW, sampler=centres)
    assert val.classes == train.classes and [r.label for r in val.records] == [1]
    assert val[0]["clip"].shape == (3, 4, 48, 64)
    test = build_dataset("kinetics", tmp_path, "test", transform=RAW, sampler=centres, frame_template="img_{:05d}.jpg")
    assert test[0]["label"] == -1 and frame_ids(test[0]["clip"]) == [1, 3, 5, 7]
    batch = collate_clips([train[0], train[1]])
    assert batch["clip"].shape == (2, 3, 4, 48, 64)


def test_kinetics_errors_name_the_file(tmp_path):
    write(tmp_path / "train.csv", "label,youtube_id,time_start,time_end,split\nabseiling,a,0,10,train\n")
    write(tmp_path / "val.csv", "label,youtube_id,time_start,time_end,split\nsurfing,b,0,10,val\n")
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match=r"val.csv:2: label 'surfing' is not a class of .*train.csv"):
        build_dataset("kinetics600", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="test.csv: Kinetics test annotations not found"):
        build_dataset("kinetics", tmp_path, "test")
    write(tmp_path / "train.csv", "name,start\nabseiling,0\n")
    with pytest.raises(ValueError, match=r"train.csv: header .* lacks youtube_id, time_start, time_end"):
        build_dataset("kinetics", tmp_path, "train")
