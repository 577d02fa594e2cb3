import gzip
import os
import shutil
import struct

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


def test_files_source_reports_all_searched_dirs(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_DIR", str(tmp_path / "none1"))
    monkeypatch.setattr(data, "KERAS_CACHE_DIR", str(tmp_path / "none2"))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(data.DatasetError, match="not found in any of"):
        keras_fmnist.load_fashion_mnist(source="files")


def test_unknown_source():
    with pytest.raises(ValueError, match="source must be one of"):
        keras_fmnist.load_fashion_mnist(source="s3")


def test_tfds_without_tensorflow_says_so():
    pytest.importorskip("tensorflow_datasets")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(data.DatasetError, match="needs tensorflow installed"):
            keras_fmnist.load_fashion_mnist(source="tfds")
    else:
        pytest.skip("tensorflow is installed: the tfds path would go online")


def test_keras_download_failure_is_one_clear_error(monkeypatch):
    import keras

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(data.DatasetError, match="keras could not download fashion_mnist"):
        keras_fmnist.load_fashion_mnist(source="keras")
