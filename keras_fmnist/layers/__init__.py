"""Custom Keras layers of the study, registered under the package name "keras_fmnist"."""
