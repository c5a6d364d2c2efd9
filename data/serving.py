"""The evaluation pipeline's preprocessing as graph ops, for the image signatures of the exported models.

Every image-taking model is exported with two signatures over the same network (`add_image_endpoints`):

    <name>(images: uint8 [N, H, W, 3], RGB, any H and W)           -> the model's outputs
    <name>_encoded(encoded_images: string [N], JPEG or PNG files)  -> the same outputs

Both resize and normalise in the graph with the ops of `data.pipeline.make_dataset` at evaluation (no
augmentation): `resize` (bilinear, antialiased when shrinking, to the model's image size whatever the aspect ratio),
clipping to [0, 255], then `normalize` (the model's "inception" or "imagenet" normalisation); the same TensorFlow
kernels on the same inputs give the same floats. A batch of `images` shares one size (a tensor); images of
different sizes go one per call, or encoded, where each file is decoded and resized on its own.

Decoding: `tf.io.decode_jpeg(channels=3, dct_method="INTEGER_ACCURATE")`, which reads PNG (and GIF, BMP) too.
"INTEGER_ACCURATE" is libjpeg's slow-but-exact integer DCT, the one OpenCV and simplejpeg use in
`data.pipeline.read_image`: with it the decoded pixels are those of training's pipeline, bit for bit
(tests/test_serving.py), where TensorFlow's default "INTEGER_FAST" differs by up to 6 grey levels. Grey and RGBA
PNGs become RGB as in OpenCV (grey replicated, alpha dropped). Unlike `read_image(strict=True)` the graph decoder
does not refuse a JPEG that libjpeg decodes with a warning: check files before serving them if that matters.
"""
from __future__ import annotations

import tensorflow as tf

from data.pipeline import IMAGENET_MEAN, IMAGENET_STD, augment_and_normalize, resize

IMAGES = "images"
ENCODED_IMAGES = "encoded_images"
ENCODED_SUFFIX = "_encoded"
JPEG_DCT_METHOD = "INTEGER_ACCURATE"  # libjpeg's JDCT_ISLOW, as OpenCV and simplejpeg decode (module docstring)
FORMULAS = {"inception": "x / 127.5 - 1 (TF-slim Inception: [-1, 1])",
            "imagenet": "(x / 255 - mean) / std per RGB channel (ImageNet statistics)"}


def preprocess(images: tf.Tensor, image_size, normalization: str) -> tf.Tensor:
    """uint8 RGB images [N, H, W, 3] of any size -> the network's float32 input [N, h, w, 3]: the evaluation
    pipeline's resize, clip and normalisation (`data.pipeline.make_dataset` without augmentation)."""
    return augment_and_normalize(resize(images, image_size), normalization)


def decode_and_preprocess(encoded: tf.Tensor, image_size, normalization: str) -> tf.Tensor:
    """JPEG / PNG file contents [N] -> the network's float32 input [N, h, w, 3]: each file decoded and resized on
    its own (their sizes differ), then clipped and normalised as a batch, as `make_dataset` does."""
    height, width = image_size

    def decode_one(data):
        return resize(tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD), image_size)

    resized = tf.map_fn(decode_one, encoded, fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
    return augment_and_normalize(resized, normalization)


def add_image_endpoints(archive, name: str, network, image_size, normalization: str) -> None:
    """Add `<name>(images)` and `<name>_encoded(encoded_images)` (module docstring) to the keras
    `ExportArchive` `archive`; `network(normalised float32 images [N, h, w, 3])` returns the outputs (a dict)."""
    image_size = tuple(int(s) for s in image_size)
    archive.add_endpoint(name, lambda images: network(preprocess(images, image_size, normalization)),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES)])
    archive.add_endpoint(name + ENCODED_SUFFIX,
                         lambda encoded: network(decode_and_preprocess(encoded, image_size, normalization)),
                         input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_IMAGES)])


def preprocessing_metadata(image_size, normalization: str) -> dict:
    """What the image signatures do to their inputs, for an export's metadata.json."""
    described = {"image_size": [int(s) for s in image_size], "input_dtype": "uint8", "input_range": [0, 255],
                 "channel_order": "RGB",
                 "resize": "tf.image.resize(method='bilinear', antialias=True) of each image to image_size "
                           "(height, width), aspect ratio not kept; then values clipped to [0, 255]",
                 "normalization": normalization, "formula": FORMULAS[normalization],
                 "decoding": f"tf.io.decode_jpeg(channels=3, dct_method='{JPEG_DCT_METHOD}'): JPEG, PNG (grey "
                             "replicated, alpha dropped)",
                 "same_as": "data.pipeline.make_dataset(image_size, normalization) at evaluation"}
    if normalization == "imagenet":
        described.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    return described
