"""Static convolution checkpoints for convolutions that hold a bank of kernels.

DynamicConv and ODConv keep ``weight`` as ``(K, out, in/groups, k, k)``; an
ImageNet ResNet checkpoint (torchvision, open-mmlab) has ``(out, in/groups, k,
k)`` for the same conv, which a plain load would skip as a size mismatch and
leave every block conv of an ODConv/DY-ResNet config at random init. Copying the
static kernel into each of the K slots keeps the pretrained function: both
designs mix the bank with attention weights that sum to one, so the aggregated
kernel starts as the static one.
"""


def expand_static_tensors(state_dict, prefix, **banks):
    """Replace, in place, each ``prefix + name`` tensor of ``state_dict`` that
    has the shape of one slot of the bank ``banks[name]`` by K copies.

    Tensors that already have the bank's shape, or another shape (left for the
    usual size-mismatch report), are untouched.
    """
    for name, bank in banks.items():
        key = prefix + name
        value = state_dict.get(key)
        if bank is None or value is None:
            continue
        if value.dim() == bank.dim() - 1 and value.shape == bank.shape[1:]:
            state_dict[key] = value.unsqueeze(0).expand_as(bank).clone()
