import numpy as np
import pytest

from keras_fmnist import pipeline


def test_stratified_split_is_deterministic_and_stratified():
    y = np.repeat(np.arange(10), 100)
    train, val = pipeline.stratified_split(y, 0.1, seed=3)
    train2, val2 = pipeline.stratified_split(y, 0.1, seed=3)
    np.testing.assert_array_equal(val, val2)
    np.testing.assert_array_equal(train, train2)
    assert np.bincount(y[val]).tolist() == [10] * 10
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(y)
    _, val_other = pipeline.stratified_split(y, 0.1, seed=4)
    assert not np.array_equal(val, val_other)


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        pipeline.stratified_split(np.zeros(10), 1.0, seed=0)


def test_batches_cover_each_example_once_per_epoch():
    images = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
    labels = np.arange(10) % 10
    batches = pipeline.ArrayBatches(images, labels, batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3
    seen = np.concatenate([np.argmax(batches[i][1], -1) for i in range(len(batches))])
    assert sorted(seen.tolist()) == list(range(10))
    x, y = batches[0]
    assert x.shape == (4, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    assert y.shape == (4, 10) and np.allclose(y.sum(-1), 1)
    order = batches._order.copy()
    batches.on_epoch_end()  # a new permutation of 10 (equal by chance with p = 1/10!)
    assert not np.array_equal(order, batches._order)


def test_batches_apply_augmentation_to_the_whole_batch():
    calls = []

    def augment(batch, training):
        calls.append((batch["images"].shape, training))
        return {"images": batch["images"] * 0, "labels": batch["labels"]}

    batches = pipeline.ArrayBatches(
        np.full((8, 28, 28), 255, np.uint8), np.zeros(8, int), batch_size=8, augment=augment
    )
    x, _ = batches[0]
    assert calls == [((8, 28, 28, 1), True)] and x.max() == 0


def test_public_api_is_reachable_after_one_import():
    import keras_fmnist

    for name in ("load_fashion_mnist", "build_resnet18", "load_torchvision_weights",
                 "DatasetError", "CLASS_NAMES"):
        assert hasattr(keras_fmnist, name), name
    assert keras_fmnist.ops.deform_conv2d
    for name in ("DeformConv2D", "DropBlock2D", "StochasticDepth", "stochastic_depth_rates"):
        assert hasattr(keras_fmnist.layers, name), name
    for name in ("BasicAugment", "MixUp", "CutMix"):
        assert hasattr(keras_fmnist.augment, name), name
    assert keras_fmnist.schedules.DropBlockSchedule
