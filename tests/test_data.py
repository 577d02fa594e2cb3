import gzip
import os
import shutil
import socket
import struct
import sys

import numpy as np
import pytest

import keras_fmnist
from keras_fmnist import data


def test_real_data_matches_keras_layout(fashion_mnist):
    (x_train, y_train), (x_test, y_test) = fashion_mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10))
    assert np.bincount(y_train).tolist() == [6000] * 10
    # The first test labels of Fashion-MNIST (ankle boot, pullover, trouser, ...).
    assert y_test[:5].tolist() == [9, 2, 1, 1, 6]


def _copy(data_dir, tmp_path):
    out = tmp_path / "fm"
    out.mkdir()
    for name, _, _ in data.FILES.values():
        shutil.copy(os.path.join(data_dir, name), out / name)
    return out


def _rewrite(path, transform):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(transform(raw))


def test_data_dir_is_used(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    (_, y_train), _ = keras_fmnist.load_fashion_mnist(str(copy))
    assert len(y_train) == 60000


def test_missing_file_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    os.remove(copy / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_truncated_gzip_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    path = copy / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.DatasetError, match="train-images-idx3-ubyte.gz: not a readable gzip"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_truncated_payload_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    path = copy / "t10k-images-idx3-ubyte.gz"
    _rewrite(path, lambda raw: raw[:-100])
    with pytest.raises(data.DatasetError, match="t10k-images-idx3-ubyte.gz: payload is"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_bad_magic_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    path = copy / "train-labels-idx1-ubyte.gz"
    _rewrite(path, lambda raw: struct.pack(">I", 0x803) + raw[4:])
    with pytest.raises(data.DatasetError, match="train-labels-idx1-ubyte.gz: bad IDX magic"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_wrong_count_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    path = copy / "t10k-labels-idx1-ubyte.gz"
    _rewrite(path, lambda raw: raw[:4] + struct.pack(">I", 9999) + raw[8:-1])
    with pytest.raises(data.DatasetError, match="holds 9999 labels, expected 10000"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_label_out_of_range_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    path = copy / "t10k-labels-idx1-ubyte.gz"
    _rewrite(path, lambda raw: raw[:-1] + bytes([10]))
    with pytest.raises(data.DatasetError, match="label 10 out of range") as error:
        keras_fmnist.load_fashion_mnist(str(copy))
    assert str(error.value).startswith(f"{path}: ")  # the full path, not the file's name


def test_not_gzip_is_named(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path)
    (copy / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(data.DatasetError, match="train-labels-idx1-ubyte.gz: not a readable gzip"):
        keras_fmnist.load_fashion_mnist(str(copy))


def test_search_order_prefers_env_dir(data_dir, tmp_path, monkeypatch):
    copy = _copy(data_dir, tmp_path)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copy))
    assert data.candidate_dirs() == [str(copy)]  # the user's location only: no silent fallback
    assert data.candidate_dirs("/x") == ["/x"]


def test_env_dir_missing_a_file_is_named_not_replaced(data_dir, tmp_path, monkeypatch):
    copy = _copy(data_dir, tmp_path)
    (copy / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copy))
    with pytest.raises(data.DatasetError) as error:
        keras_fmnist.load_fashion_mnist()
    assert str(error.value) == f"{copy / 't10k-labels-idx1-ubyte.gz'}: file not found"


def test_a_relative_data_dir_is_named_by_its_full_path(data_dir, tmp_path, monkeypatch):
    copy = _copy(data_dir, tmp_path)
    (copy / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DatasetError) as error:
        keras_fmnist.load_fashion_mnist(copy.name)
    assert str(error.value) == f"{copy / 'train-labels-idx1-ubyte.gz'}: file not found"


def test_files_source_reports_all_searched_dirs(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "none1"))
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", str(tmp_path / "none2"))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(data.DatasetError, match="not found in any of"):
        keras_fmnist.load_fashion_mnist(source="files")


def test_unknown_source():
    with pytest.raises(ValueError, match="source must be one of"):
        keras_fmnist.load_fashion_mnist(source="s3")


def test_tfds_without_tensorflow_says_so(monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(data.DatasetError, match="needs tensorflow installed"):
        keras_fmnist.load_fashion_mnist(source="tfds")


def _offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _sorted_examples(images, labels):
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.backend_independent(reason="tfds and numpy only, no Keras: one pass proves it")
def test_tfds_is_prepared_offline_from_the_local_idx_files(tmp_path, monkeypatch, data_dir):
    pytest.importorskip("tensorflow")
    _offline(monkeypatch)
    monkeypatch.setenv("FASHION_MNIST_DIR", data_dir)
    tfds_dir = str(tmp_path / "tfds")
    (x_train, y_train), (x_test, y_test) = keras_fmnist.load_fashion_mnist(
        source="tfds", data_dir=tfds_dir
    )
    assert (x_train.shape, x_train.dtype, y_train.shape, y_train.dtype) == (
        (60000, 28, 28), np.uint8, (60000,), np.uint8)
    assert (x_test.shape, y_test.shape) == ((10000, 28, 28), (10000,))
    (ref_x, ref_y), (ref_xt, ref_yt) = keras_fmnist.load_fashion_mnist(source="files")
    # tfds stores the examples in its own (hashed) order: the same examples, reordered.
    np.testing.assert_array_equal(_sorted_examples(x_train, y_train),
                                  _sorted_examples(ref_x, ref_y))
    np.testing.assert_array_equal(_sorted_examples(x_test, y_test),
                                  _sorted_examples(ref_xt, ref_yt))
    # Prepared once: read back from tfds' directory without the IDX files.
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "empty"))
    (again, _), _ = keras_fmnist.load_fashion_mnist(source="tfds", data_dir=tfds_dir)
    np.testing.assert_array_equal(again, x_train)


def test_tfds_without_the_idx_files_says_why_and_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    _offline(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(empty))
    with pytest.raises(data.DatasetError, match=(
        r"fashion_mnist is not prepared in .* prepared offline from the four IDX files, "
        r"which are in none of: .*empty .*apt-get install dataset-fashion-mnist")):
        keras_fmnist.load_fashion_mnist(source="tfds", data_dir=str(tmp_path / "tfds"))


def test_tfds_names_a_corrupt_idx_file(tmp_path, monkeypatch, data_dir):
    pytest.importorskip("tensorflow")
    _offline(monkeypatch)
    bad = tmp_path / "idx"
    shutil.copytree(data_dir, bad)
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(bad))
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip"):
        keras_fmnist.load_fashion_mnist(source="tfds", data_dir=str(tmp_path / "tfds"))


def test_keras_download_failure_is_one_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(data.DatasetError, match="keras could not download fashion_mnist"):
        keras_fmnist.load_fashion_mnist(source="keras")
