"""Fashion-MNIST loading: the four IDX files, validated, from local disk, tfds or keras' download.

`load_fashion_mnist` returns exactly what `keras.datasets.fashion_mnist.load_data()` returns:
`((x_train, y_train), (x_test, y_test))`, uint8 images (N, 28, 28) and uint8 labels 0..9.
"""

import gzip
import os
import struct
import zlib

import numpy as np

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 28

# (file name, kind, expected count). Debian's dataset-fashion-mnist ships the same content with
# other gzip wrappers, so files are validated by their IDX headers and sizes, never by checksums.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "images", 60000),
    "train_labels": ("train-labels-idx1-ubyte.gz", "labels", 60000),
    "test_images": ("t10k-images-idx3-ubyte.gz", "images", 10000),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "labels", 10000),
}
_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
KERAS_CACHE_DIR = os.path.join("~", ".keras", "datasets", "fashion-mnist")
SOURCES = ("auto", "files", "tfds", "keras")


class DatasetError(ValueError):
    """The data set could not be loaded: the message names the file or source and the fault."""


def candidate_dirs(data_dir=None):
    """Directories searched for the IDX files, in order.

    A location the user gave, `data_dir` or else `$FASHION_MNIST_DIR`, is the only candidate:
    a user who names a directory means that one, and silently falling back to another copy
    would hide their mistake.
    """
    given = user_data_dir(data_dir)
    if given is not None:
        return [given]
    dirs = [DEBIAN_DIR]
    dirs.append(os.path.expanduser(KERAS_CACHE_DIR))
    return dirs


def user_data_dir(data_dir=None):
    """The data directory the user named (`data_dir`, else `$FASHION_MNIST_DIR`), as an
    absolute path (errors name full paths), or None."""
    if data_dir is None:
        data_dir = os.environ.get("FASHION_MNIST_DIR") or None
    if data_dir is None:
        return None
    return os.path.abspath(os.path.expanduser(data_dir))


def _has_all_files(directory):
    return all(os.path.isfile(os.path.join(directory, name)) for name, _, _ in FILES.values())


def read_idx(path, kind, expected_count):
    """Reads one gzipped IDX file and checks its header against what Fashion-MNIST must be.

    Args:
        path: the `.gz` file.
        kind: "images" (IDX3, uint8, count x 28 x 28) or "labels" (IDX1, uint8, count).
        expected_count: the number of records the file must hold.

    Returns:
        A uint8 array, (count, 28, 28) for images or (count,) for labels.

    Raises:
        DatasetError: naming the file and what is wrong with it.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e})") from None

    ndim = 3 if kind == "images" else 1
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != _IDX_MAGIC[kind]:
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected "
            f"0x{_IDX_MAGIC[kind]:08x} for {kind}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    if dims[0] != expected_count:
        raise DatasetError(f"{path}: holds {dims[0]} {kind}, expected {expected_count}")
    if kind == "images" and tuple(dims[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{path}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    payload = int(np.prod(dims))
    if len(raw) - header_size != payload:
        raise DatasetError(
            f"{path}: payload is {len(raw) - header_size} bytes, the header announces {payload} "
            "(truncated or padded file)"
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
    if kind == "labels" and data.size and data.max() >= NUM_CLASSES:
        raise DatasetError(
            f"{path}: label {int(data.max())} out of range 0..{NUM_CLASSES - 1}"
        )
    return data.copy()


def load_from_dir(directory):
    """Loads and validates the four IDX files of one directory."""
    arrays = {
        key: read_idx(os.path.join(directory, name), kind, count)
        for key, (name, kind, count) in FILES.items()
    }
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise DatasetError(
                f"{directory}: {split} split has {n_images} images but {n_labels} labels"
            )
    return (arrays["train_images"], arrays["train_labels"]), (
        arrays["test_images"],
        arrays["test_labels"],
    )


def load_from_tfds(data_dir=None):
    """Loads through tensorflow-datasets, prepared offline from the local IDX files.

    tfds' own `fashion_mnist` builder downloads the four IDX files from the internet when the
    data set is not prepared yet. Here a subclass of that builder (same name, version and
    features, so tfds reads its output as `fashion_mnist`) takes the files from the local
    directory instead (`$FASHION_MNIST_DIR`, Debian's `dataset-fashion-mnist`, then keras'
    cache; see `candidate_dirs`), validated by `read_idx` first; nothing goes online. Once
    prepared, tfds reads the data set from `data_dir` (tfds' data directory; default
    `~/tensorflow_datasets`) without the IDX files. Preparing writes 70,000 PNG-encoded
    examples once (about a minute on a CPU).

    tensorflow-datasets can read a prepared data set on its own, but preparing one needs
    tensorflow itself, so its absence is reported up front rather than as a deep import error.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DatasetError(
            "source='tfds' needs tensorflow-datasets: pip install tensorflow-datasets tensorflow"
        ) from None
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DatasetError(
            "source='tfds' needs tensorflow installed to prepare fashion_mnist "
            "(pip install tensorflow); or use the IDX files (source='files')"
        ) from None
    builder = _local_tfds_builder(tfds)(data_dir=data_dir)
    if not builder.is_prepared():
        idx_dir = next((d for d in candidate_dirs() if _has_all_files(d)), None)
        if idx_dir is None:
            raise DatasetError(
                f"source='tfds': fashion_mnist is not prepared in {builder.data_dir} and it is "
                "prepared offline from the four IDX files, which are in none of: "
                + ", ".join(candidate_dirs())
                + " (apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)"
            )
        load_from_dir(idx_dir)  # validated here, so a bad file is named, not a tfds error
        builder.idx_dir = idx_dir
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        except Exception as e:  # tfds raises many types (I/O, preparation).
            raise DatasetError(
                f"tensorflow-datasets could not prepare fashion_mnist from {idx_dir}: {e}"
            ) from None
    splits = builder.as_dataset(split=["train", "test"], batch_size=-1, as_supervised=True)
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(splits)
    return (
        (x_train[..., 0].astype(np.uint8), y_train.astype(np.uint8)),
        (x_test[..., 0].astype(np.uint8), y_test.astype(np.uint8)),
    )


_LOCAL_TFDS_BUILDER = None


def _local_tfds_builder(tfds):
    """tfds' `fashion_mnist` builder reading the IDX files of `builder.idx_dir`, not the web.

    Defined on first use (it subclasses a tfds class) and kept out of tfds' registry, so
    `tfds.builder("fashion_mnist")` stays tfds' own.
    """
    global _LOCAL_TFDS_BUILDER
    if _LOCAL_TFDS_BUILDER is not None:
        return _LOCAL_TFDS_BUILDER
    import inspect

    from etils import epath
    from tensorflow_datasets.image_classification.mnist import FashionMNIST

    class _LocalFiles:
        """The one download-manager call the builder makes, answered from local files."""

        def __init__(self, idx_dir, scratch):
            self.idx_dir, self.scratch = idx_dir, scratch

        def download_and_extract(self, urls):
            paths = {}
            for key, url in urls.items():
                name = os.path.basename(url)
                target = os.path.join(self.scratch, name[: -len(".gz")])
                with gzip.open(os.path.join(self.idx_dir, name), "rb") as f:
                    raw = f.read()
                with open(target, "wb") as f:
                    f.write(raw)
                paths[key] = target
            return paths

    class LocalFashionMNIST(FashionMNIST, skip_registration=True):
        name = "fashion_mnist"
        idx_dir = None
        # tfds 4.9.10 finds a builder's source through `importlib_resources`, which it
        # requires only on Python < 3.9 and then imports anyway (ModuleNotFoundError); the
        # builder's source file is all it wants, and it is tfds' own mnist.py.
        code_path = epath.Path(inspect.getfile(FashionMNIST))

        def _split_generators(self, dl_manager):
            import tempfile

            if self.idx_dir is None:
                raise DatasetError("LocalFashionMNIST: idx_dir not set")
            # The extracted files must outlive this call (tfds reads them later, while
            # writing the splits), so they live as long as the builder object.
            self._scratch = tempfile.TemporaryDirectory(prefix="fashion_mnist_idx-")
            return super()._split_generators(_LocalFiles(self.idx_dir, self._scratch.name))

    _LOCAL_TFDS_BUILDER = LocalFashionMNIST
    return LocalFashionMNIST


def load_from_keras():
    """Keras's own download into ~/.keras/datasets (online machines only)."""
    import keras

    try:
        return keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # urllib/HTTP errors vary by platform.
        raise DatasetError(f"keras could not download fashion_mnist: {e}") from None


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, source: str = "auto"
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads Fashion-MNIST as `keras.datasets.fashion_mnist.load_data()` does.

    Args:
        data_dir: a directory holding the four IDX `.gz` files. When given, only it is read.
            When None: `$FASHION_MNIST_DIR`, then `/usr/share/datasets/fashion-mnist` (Debian's
            `dataset-fashion-mnist`), then `~/.keras/datasets/fashion-mnist`.
        source: "auto" (local IDX files, else keras's online download), "files" (local IDX files
            only), "tfds" (tensorflow-datasets, prepared offline from the local IDX files on
            first use; `data_dir` is then tfds' data directory) or "keras" (keras's download).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 (60000, 28, 28), uint8 (60000,),
        uint8 (10000, 28, 28), uint8 (10000,).

    Raises:
        DatasetError: a missing, truncated or corrupt file (named), or an unavailable source.
        ValueError: an unknown `source`.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape, y_test[:3]
    ((60000, 28, 28), array([9, 2, 1], dtype=uint8))
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
    if source == "tfds":
        return load_from_tfds(data_dir)
    if source == "keras":
        return load_from_keras()
    dirs = candidate_dirs(data_dir)
    for directory in dirs:
        if _has_all_files(directory):
            return load_from_dir(directory)
    if user_data_dir(data_dir) is not None:
        # Name the first missing file: far more useful than "not found" for a directory.
        for name, _, _ in FILES.values():
            if not os.path.isfile(os.path.join(dirs[0], name)):
                raise DatasetError(f"{os.path.join(dirs[0], name)}: file not found")
    if source == "files":
        raise DatasetError(
            "Fashion-MNIST IDX files not found in any of: "
            + ", ".join(dirs)
            + " (apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)"
        )
    return load_from_keras()
