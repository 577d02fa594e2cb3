"""run_training in process: what is augmented, and what the run records."""

import numpy as np

import keras
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_fmnist import experiments
from keras_fmnist import pipeline


def test_only_training_batches_are_augmented(tmp_path, monkeypatch):
    seen = []

    def recording_layer(name, seed):
        assert name == "cutmix"

        def augment(batch, training):
            seen.extend(np.asarray(batch["images"]).reshape(len(batch["images"]), -1))
            assert training is True
            return batch

        return augment

    monkeypatch.setattr(experiments, "make_augment_layer", recording_layer)
    config = experiments.RunConfig(
        experiment="augment", augment="cutmix", epochs=2, batch_size=50, train_limit=300,
        test_limit=40, artifacts_dir=str(tmp_path), verbose=0,
    )
    metrics = experiments.run_training(config)
    data = experiments.prepare_data(config)
    key = lambda images: {row.tobytes() for row in np.asarray(images).reshape(len(images), -1)}
    train = key(pipeline.to_model_inputs(data["train"][0]))
    others = key(pipeline.to_model_inputs(data["val"][0])) | key(
        pipeline.to_model_inputs(data["test"][0]))
    seen_keys = {row.tobytes() for row in seen}
    assert metrics["split"]["val"] > 0
    # Every training example went through the augmentation; no validation or test example did.
    assert seen_keys == train
    assert not (seen_keys & (others - train))
    # Keras may peek at batches before training: one on torch and jax; on tensorflow the
    # first NUM_BATCHES_FOR_TENSOR_SPEC (2) to build tf.data's signature of the PyDataset.
    # Beyond that, each example once per epoch.
    peeked = (data_adapter_utils.NUM_BATCHES_FOR_TENSOR_SPEC
              if keras.backend.backend() == "tensorflow" else 1)
    assert 2 * len(train) <= len(seen) <= 2 * len(train) + peeked * config.batch_size


def test_soft_labels_train_and_accuracy_uses_argmax():
    from keras_fmnist import training
    import keras_fmnist

    model = training.compile_model(keras_fmnist.build_resnet18(stages=1))
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    soft = np.full((8, 10), 0.02, np.float32)
    soft[:, 3] = 0.82  # argmax 3 everywhere
    logs = model.train_on_batch(x, soft, return_dict=True)
    assert np.isfinite(logs["loss"])
    logits = model.predict(x, verbose=0)
    expected = float(np.mean(np.argmax(logits, -1) == 3))
    assert model.evaluate(x, soft, verbose=0, return_dict=True)["accuracy"] == expected
    assert pipeline.one_hot([3])[0, 3] == 1.0
