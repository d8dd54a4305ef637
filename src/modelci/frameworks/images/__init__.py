"""Image models: a PyTorch network trained on a folder of images per class, exported with its preprocessing.

The model factory, for an image model (`data.image` set in modelci.yaml):

    def build(input_shape: tuple[int, int, int], output_dim: int, **params) -> torch.nn.Module

`input_shape` is (channels, height, width), from `data.image` (`channels`, and `size: [height,
width]`). The module maps a float32 tensor [batch, channels, height, width], already scaled and
normalized as (pixel / 255 - mean) / std per channel, to [batch, output_dim] raw scores: one logit
for a binary task, one per class for multiclass (the classes are the class folders' names, sorted).
modelci adds the rest: in front, a layer that takes the uint8 images [batch, height, width,
channels] and does the cast, scaling, normalization and transpose; behind, the sigmoid or softmax.
Both travel in the exported ONNX model, whose input (named as the image column, `image`) is that
uint8 tensor: a client decodes the image, converts it to RGB (or grey), resizes it to the size
(bilinear, stretched) and sends the pixels. `examples/shapes/model.py` is a complete factory.

The modules: `pixels` (decode and resize, no torch), `datasets` (the folders as tables of paths and
labels, no torch), `augment` (`train.augment`), `network` (the model, its checkpoint and export),
`training` (the streaming loader, through the PyTorch loop of `modelci.frameworks.torch_loop`).
"""
