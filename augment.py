"""The batched augmentation: what the loop does to a batch of uint8 images on their device.

Images are held at the "load size" L (support/datasets.py) and cut to the training size S here:
- S <= 64 px (CIFAR): L = S; train: zero-pad 4 px, random S x S crop, random flip; test: as is.
- larger (the paper's section 2): the shorter side resized to L = 8/7 S (256 for 224), centre
  L x L; train: random resized crop (8%-100% of the area, aspect 3/4-4/3) to S x S via
  `roi_align`, random flip; test: centre S x S crop (the usual resize-256-crop-224).
Then, optionally, the paper's colour augmentation (colour jitter, PCA lighting), and last, after
the tricks' batch hooks, normalisation by a per-channel mean and std (CIFAR's own; ImageNet's for
folder data, as the paper).

Each function takes a whole batch: one gather or one roi_align for the crops of all its images,
the random numbers drawn on the images' device (gen), so nothing waits for the GPU.
"""
import functools
import math

import torch
import torch.nn.functional as F

PAD_CROP_MAX = 64  # images up to this size get pad-crop; larger ones random-resized-crop
MEAN_STD = {  # per-channel statistics of the training images, for normalisation
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'folder': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's, as the paper
}


def load_size(image_size):
    return image_size if image_size <= PAD_CROP_MAX else round(image_size * 8 / 7)


def random_crop_flip(images, pad, gen):
    """Zero-pad by `pad`, cut a random crop of the original size, mirror a random half.

    Two gathers (rows, then columns read backwards for the mirrored ones), not 4-d indexing and
    a separate flip: fewer operations, since a small net's step on a GPU is paced by launching
    them (docs/speed.md, "Operations per step"). gen is on the images' device.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=gen, device=gen.device)
    flip = torch.randint(0, 2, (n,), generator=gen, device=gen.device)
    rows = dy + orders(h, gen.device)[0]
    cols = dx + orders(w, gen.device)[flip]  # row 1 of orders reads backwards: a mirror
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


@functools.lru_cache
def orders(n, device):
    """[[0, 1, ..., n - 1], [n - 1, ..., 1, 0]] on device, made once and shared: read only."""
    ahead = torch.arange(n, device=device)
    return torch.stack([ahead, ahead.flip(0)])


def random_flip(images, gen):
    """Mirror a random half of the images left-right."""
    flip = torch.rand(len(images), generator=gen, device=gen.device).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_resized_crop(images, size, gen, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crops, all in one roi_align: float N x 3 x size x size in [0, 255].

    Like torchvision's RandomResizedCrop: up to 10 tries per image for a box of the sampled
    area and aspect that fits, else the whole image.
    """
    n, _, h, w = images.shape
    tries = 10
    area = h * w * torch.empty(n, tries, device=gen.device).uniform_(*scale, generator=gen)
    log_r = torch.empty(n, tries, device=gen.device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                generator=gen)
    bw, bh = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()
    ok = (bw <= w) & (bh <= h)
    first = ok.float().argmax(1)  # the first box that fits (0 when none does)
    pick = torch.arange(n, device=gen.device)
    bw, bh, ok = bw[pick, first], bh[pick, first], ok.any(1)
    bw, bh = torch.where(ok, bw, torch.full_like(bw, w)), torch.where(ok, bh, torch.full_like(bh, h))
    x0 = torch.rand(n, generator=gen, device=gen.device) * (w - bw)
    y0 = torch.rand(n, generator=gen, device=gen.device) * (h - bh)
    boxes = torch.stack([pick.float(), x0, y0, x0 + bw, y0 + bh], 1).to(images.device)
    from torchvision.ops import roi_align
    return roi_align(images.float(), boxes, size, sampling_ratio=2, aligned=True)


def center_crop(images, size):
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def color_jitter(x, strength, gen):
    """Brightness, contrast and saturation each scaled by a factor from U(1 - s, 1 + s) per
    image, in a random order per batch (as torchvision's ColorJitter(s, s, s), batched)."""
    n = len(x)

    def factor():
        return torch.empty(n, 1, 1, 1, device=gen.device).uniform_(1 - strength, 1 + strength,
                                                                 generator=gen).to(x.device)

    def gray(img):  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
        return (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)

    def blend(img, toward):  # torchvision's adjust_*: toward + factor * (img - toward)
        return toward + factor() * (img - toward)

    ops = [lambda img: img * factor(),                                      # brightness
           lambda img: blend(img, gray(img).mean((2, 3), keepdim=True)),   # contrast
           lambda img: blend(img, gray(img))]                              # saturation
    for k in torch.randperm(3).tolist():  # on the CPU: no device sync
        x = ops[k](x).clamp_(0, 1)
    return x


# AlexNet's PCA lighting (Krizhevsky et al. 2012): the eigenvalues and eigenvectors of the RGB
# covariance of ImageNet's training pixels (in [0, 1]), as fb.resnet.torch and gluon-cv use them.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


def lighting(x, std, gen):
    """Add eigvec @ (alpha * eigval) to every pixel of an image, alpha ~ N(0, std^2) per image."""
    alpha = torch.randn(len(x), 3, device=gen.device, generator=gen).to(x.device) * std
    eigval, eigvec = pca_basis(x.device)
    shift = (alpha * eigval) @ eigvec.T  # per image: sum_j eigvec[:, j] * alpha_j * eigval_j
    return x + shift[:, :, None, None]


@functools.lru_cache
def pca_basis(device):
    """ImageNet's eigenvalues and eigenvectors on device, copied there once: read only."""
    return to_device(torch.tensor(IMAGENET_EIGVAL), device), to_device(torch.tensor(IMAGENET_EIGVEC), device)


def train_view(images, image_size, gen, jitter=0.0, pca_std=0.0):
    """uint8 batch -> augmented float batch in [0, 1] (lighting may step outside), S x S."""
    if image_size <= PAD_CROP_MAX:
        x = random_crop_flip(images, 4, gen).float().div_(255)
    else:
        x = random_flip(random_resized_crop(images, image_size, gen), gen).div_(255)
    if jitter:
        x = color_jitter(x, jitter, gen)
    if pca_std:
        x = lighting(x, pca_std, gen)
    return x


def test_view(images, image_size, load_size):
    """uint8 batch -> float batch in [0, 1]: resized to load_size where it is held at another size
    (val images are held at the training load size; FixRes tests at a larger one), then the centre
    image_size x image_size."""
    if images.shape[-1] != load_size:
        from torchvision.transforms.v2 import functional as TF
        images = TF.resize(images, [load_size, load_size], antialias=True)
    return center_crop(images, image_size).float().div_(255)


def to_device(tensor, device):
    """A host tensor on device; to a GPU through pinned memory, a copy that does not wait for the GPU."""
    if device.type == 'cuda':
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def normalize(x, mean, std):
    """Per channel: (x - mean) / std, mean and std as 1 x 3 x 1 x 1 tensors on x's device."""
    return (x - mean) / std
