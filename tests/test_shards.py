"""WebDataset shards written with webdataset's own writer read back identically, once per epoch,
split across workers and processes."""

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from composer.data import Sample, ShardDataset, Skipped, data_loader


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shards(tmp_path):
    """4 shards x 5 samples, 32x32 PNGs; every 3rd sample has a .json with boxes."""
    rng = np.random.default_rng(0)
    arrays = {}
    pattern = str(tmp_path / "shard-%05d.tar")
    with wds.ShardWriter(pattern, maxcount=5, verbose=0) as writer:
        for index in range(20):
            key = f"{index:06d}"
            arrays[key] = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            record = {"__key__": key, "png": _png(arrays[key]), "txt": f"caption {index}"}
            if index % 3 == 0:
                record["json"] = json.dumps({"boxes": [[0.25, 0.25, 0.75, 0.5]], "phrases": [f"object {index}"]})
            writer.write(record)
    urls = sorted(str(path) for path in tmp_path.glob("shard-*.tar"))
    assert len(urls) == 4
    return urls, arrays


def _key(sample: Sample) -> str:
    return sample.source.rsplit(":", 1)[1]


def test_shards_read_back_identically(shards):
    urls, arrays = shards
    samples = [s for s in ShardDataset(urls, size=32, random_crop=False, shuffle_shards=False) if isinstance(s, Sample)]
    assert len(samples) == 20
    for sample in samples:
        key = _key(sample)
        expected = torch.from_numpy(arrays[key]).permute(2, 0, 1).float() / 255
        assert torch.equal(sample.image, expected), key
        assert sample.caption == f"caption {int(key)}"
        if int(key) % 3 == 0:
            assert sample.phrases == [f"object {int(key)}"]
            assert torch.allclose(sample.boxes, torch.tensor([[0.25, 0.25, 0.75, 0.5]]))
        else:
            assert sample.phrases == [] and sample.boxes.shape == (0, 4)


def test_two_workers_read_each_sample_once(shards):
    urls, arrays = shards
    dataset = ShardDataset(urls, size=32, random_crop=False, seed=3)
    loader = data_loader(dataset, batch_size=3, num_workers=2, drop_last=False)
    keys = [source.rsplit(":", 1)[1] for batch in loader for source in batch.sources]
    assert len(keys) == len(set(keys)) == 20 and set(keys) == set(arrays)


def test_processes_split_disjointly_and_cover_everything(shards):
    urls, arrays = shards
    seen = []
    for rank in range(2):
        dataset = ShardDataset(urls, size=32, random_crop=False, seed=5, rank=rank, world_size=2)
        seen.append({_key(s) for s in dataset if isinstance(s, Sample)})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(arrays)
    assert seen[0] and seen[1]


def test_epochs_reshuffle_shard_order(shards):
    urls, _ = shards
    dataset = ShardDataset(urls, size=32, random_crop=False, seed=0)
    orders = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        orders.append(tuple(dataset.my_shards()))
    assert len(set(orders)) > 1 and all(sorted(order) == sorted(urls) for order in orders)


def test_brace_patterns_and_bad_members(tmp_path):
    pattern = str(tmp_path / "s-%03d.tar")
    with wds.ShardWriter(pattern, maxcount=10, verbose=0) as writer:
        writer.write({"__key__": "good", "png": _png(np.zeros((16, 16, 3), np.uint8)), "txt": "ok"})
        writer.write({"__key__": "broken", "jpg": b"not a jpeg", "txt": "bad"})
        writer.write({"__key__": "textonly", "txt": "no image here"})
    items = list(ShardDataset(str(tmp_path / "s-{000..000}.tar"), size=16, random_crop=False))
    assert sum(isinstance(i, Sample) for i in items) == 1
    assert sorted(i.reason for i in items if isinstance(i, Skipped)) == ["no_image", "unreadable"]


def test_set_epoch_reaches_the_workers(shards):
    urls, _ = shards
    dataset = ShardDataset(urls, size=32, random_crop=False, seed=0)
    loader = data_loader(dataset, batch_size=20, num_workers=2, drop_last=False)
    orders = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        orders.append(tuple(source for batch in loader for source in batch.sources))
    assert len(set(orders)) > 1  # a new shard order each epoch


def test_a_json_that_is_not_an_object_is_ignored_not_fatal(tmp_path):
    pattern = str(tmp_path / "odd-%03d.tar")
    odd = {"null": b"null", "list": b"[1, 2]", "number": b"5", "nested": b"[" * 100_000 + b"]" * 100_000,
           "caption": json.dumps({"caption": 7}).encode()}
    with wds.ShardWriter(pattern, maxcount=10, verbose=0) as writer:
        for key, meta in odd.items():
            writer.write({"__key__": key, "png": _png(np.zeros((16, 16, 3), np.uint8)), "json": meta})
    items = list(ShardDataset(str(tmp_path / "odd-000.tar"), size=16, random_crop=False, shuffle_shards=False))
    assert all(isinstance(item, Sample) for item in items) and len(items) == len(odd)
    assert {_key(item): item.caption for item in items} == {"null": "", "list": "", "number": "", "nested": "",
                                                          "caption": "7"}
