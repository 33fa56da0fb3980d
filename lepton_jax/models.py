"""Flax models chosen by short name: mlp, lenet5, linear."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lepton_jax.config import ModelConfig
from lepton_jax.errors import UserError

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "silu": nn.silu,
}


# Kernels with at most this many output units get `_narrow_kernel_matmul` on CPU.
_NARROW_MAX = 32


@jax.custom_vjp
def _narrow_kernel_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`x @ kernel`, with the kernel's gradient computed as `(g.T @ x).T` instead of
    `x.T @ g`.

    XLA:CPU runs `x.T @ g`, both operands contracted over their rows, slowly when the kernel
    is narrow. MLP 784-512-512-10's output layer at batch 128 (512x128x10) took 133-158 us
    that way and 38-47 us as `g.T @ x` and a transpose of the small result; 84x128x10 13 vs
    6 us, 512x1024x10 761 vs 263 us, and an 8-member vmapped 512x128x10 1400 vs 420 us. At
    64 outputs the two were even, at 128 the transposed form was slower (173 vs 250 us).
    The barrier keeps XLA from folding the transpose back into the product. The two sums
    add the same terms in another order: the gradients agree to float32 rounding."""
    return x @ kernel


def _narrow_kernel_matmul_fwd(x, kernel):
    return x @ kernel, (x, kernel)


def _narrow_kernel_matmul_bwd(residuals, g):
    x, kernel = residuals
    return g @ kernel.T, lax.optimization_barrier(g.T @ x).T


_narrow_kernel_matmul.defvjp(_narrow_kernel_matmul_fwd, _narrow_kernel_matmul_bwd)


def _dense_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None):
    """`lax.dot_general` for `nn.Dense`, except for a narrow kernel on CPU applied to a
    batch of rows: `_narrow_kernel_matmul`."""
    if (jax.default_backend() == "cpu" and lhs.ndim == 2 and rhs.ndim == 2
            and rhs.shape[1] <= _NARROW_MAX and precision is None
            and preferred_element_type is None
            and tuple(map(tuple, dimension_numbers[0])) == ((1,), (0,))):
        return _narrow_kernel_matmul(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)


# `nn.Dense` (same parameters, same names), with the kernel gradient above on CPU.
Dense = functools.partial(nn.Dense, dot_general=_dense_dot_general)


class MLP(nn.Module):
    """Fully connected network on flattened inputs."""

    hidden: Sequence[int]
    num_outputs: int
    activation: str = "relu"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """`train`: drop hidden units (`dropout`), drawing from the "dropout" rng."""
        x = x.reshape((x.shape[0], -1))
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(Dense(width)(x))
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return Dense(self.num_outputs)(x)


def _max_pool_2x2(x: jax.Array) -> jax.Array:
    # A reshape + max instead of reduce_window: its gradient avoids select_and_scatter,
    # which is slow on both XLA:CPU and GPU (PERF_NOTES: +3-5 % on an H100).
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


_CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_CONV_DIMS)


def _same_padding(x: jax.Array, kh: int, kw: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))


def _conv_by_shifts(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """The convolution as a sum over kernel offsets of shifted input windows times the
    kernel's (in, out) matrix at that offset. With one or a few input channels XLA:CPU
    fuses this into one loop several times faster than its convolution (LeNet-5's first
    layer: ~1.2 ms vs ~6 ms forward at batch 128)."""
    kh, kw = kernel.shape[:2]
    if padding == "SAME":
        x = _same_padding(x, kh, kw)
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            # A broadcast product, not a matmul: it stays elementwise under vmap, so a
            # population member rounds exactly as its standalone run.
            term = (x[:, i:i + out_h, j:j + out_w, :, None] * kernel[i, j]).sum(axis=3)
            out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv_relu_pool_by_shifts(x, kernel, bias, padding):
    """max_pool_2x2(relu(conv(x) + bias)) with the convolution as `_conv_by_shifts`.

    One block with a hand-written gradient: XLA fuses the cheap-looking sum into each of
    its consumers and recomputes it there, and JAX's own gradient of ReLU and pooling gives
    it more consumers than this one does. The training forward computes the sum once
    (`_computed_once`) and keeps it, with the pooled maximum, for the backward pass, which
    recomputes nothing. As in JAX's gradient of `max`, a window's
    gradient is split equally among the positions that tie for its maximum: ties are
    everywhere on real images (a constant background gives equal sums), and an earlier
    version that sent the whole gradient to each tied position made the first layer's
    gradients up to 4x too large on MNIST.

    Without differentiation (evaluation, prediction) the pool is the maximum of the four
    strided 2x2 positions, then bias and ReLU on the pooled grid (the same values: both
    commute with the maximum). XLA:CPU fuses the sum of shifts into the pool's reduction
    and runs that fusion slowly; the elementwise maximum runs it ~4x faster (LeNet-5
    forward, 2048 images: 90-98 ms vs 393-417 ms). The training forward keeps the reshape
    + max: with the strided maximum there, the train step got slower (b128: 30 vs 24 ms)."""
    y = _conv_by_shifts(x, kernel, padding)
    top = jnp.maximum(jnp.maximum(y[:, 0::2, 0::2], y[:, 0::2, 1::2]),
                      jnp.maximum(y[:, 1::2, 0::2], y[:, 1::2, 1::2]))
    return jax.nn.relu(top + bias)


def _computed_once(y: jax.Array) -> jax.Array:
    """`y` itself, as the output of a matmul with the identity (exact: one product by 1.0
    plus zeros per element).

    XLA:CPU duplicates a cheap elementwise producer into every consumer whose inputs are
    smaller than its output: the sum of 25 shifted windows (one input channel, six output
    channels) was recomputed in four fusions of the train step, ~2 ms each at batch 128.
    A matmul counts as expensive, so XLA keeps its output in memory and the consumers read
    it (LeNet-5 b128 train step: 15.8 ms vs 18.7 ms, identical parameters)."""
    return jnp.matmul(y, jnp.eye(y.shape[-1], dtype=y.dtype), precision=lax.Precision.HIGHEST)


def _conv_kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple,
                      padding: str) -> jax.Array:
    """The gradient of a stride-1 convolution's HWIO kernel, given its input `x` (NHWC) and
    output gradient `g`: itself a convolution, written in the NHWC/HWIO form XLA:CPU runs
    fast, with the channels as the batch and the examples as the features.

    XLA's own gradient (`jax.vjp` of the convolution) is a convolution with permuted
    dimension labels, which XLA:CPU rewrites into that form in a plain step but not inside a
    while loop: there LeNet-5's kernel gradients took 25 and 14 ms per b128 step instead of
    ~1 ms, and a scanned step 7x longer than a plain one."""
    kh, kw = kernel_shape[:2]
    if padding == "SAME":
        x = _same_padding(x, kh, kw)
    # [c_in, H, W, n] (*) [h, w, n, c_out] -> [c_in, kh, kw, c_out], summed over n, h, w.
    dk = _xla_conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), "VALID")
    return jnp.transpose(dk, (1, 2, 0, 3))


def _conv_relu_pool_fwd(x, kernel, bias, padding):
    y = _computed_once(_conv_by_shifts(x, kernel, padding) + bias)
    top = _max_pool_2x2(y)
    # The pooled maximum is kept for the backward pass: the tie mask compares each window
    # with this very value (ReLU commutes with the maximum).
    return jax.nn.relu(top), (x, kernel, y, top)


def _conv_relu_pool_bwd(padding, residuals, g):
    x, kernel, y, top = residuals
    n, h, w, c = y.shape
    windows = y.reshape(n, h // 2, 2, w // 2, 2, c)
    is_max = windows == top[:, :, None, :, None, :]
    # The share is taken on the pooled grid (a quarter of the elements), and the tie count
    # sums floats, not booleans: both measurably cheaper on XLA:CPU (26 vs 34-41 ms a step).
    g_share = g / jnp.where(is_max, 1.0, 0.0).astype(y.dtype).sum(axis=(2, 4))
    dy = jnp.where(is_max & (windows > 0), g_share[:, :, None, :, None, :], 0).reshape(y.shape)
    (dx,) = jax.vjp(lambda a: _xla_conv(a, kernel, padding), x)[1](dy)
    return dx, _conv_kernel_grad(x, dy, kernel.shape, padding), dy.sum(axis=(0, 1, 2))


_conv_relu_pool_by_shifts.defvjp(_conv_relu_pool_fwd, _conv_relu_pool_bwd)


# The largest band matrix `_conv_valid_band_grad` builds (elements); beyond it, XLA's own
# convolution gradient (the band's redundant products grow with the image width).
_BAND_MAX = 1 << 20


@jax.custom_vjp
def _conv_valid_band_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """XLA's VALID convolution, with the input gradient computed as one matmul of the output
    gradient's rows with a band matrix built from the kernel, then a sum of `kh` row-shifted
    slabs. XLA:CPU computes that gradient as a padded convolution with few output channels,
    slowly: LeNet-5's second layer (14x14x6 -> 10x10x16) at batch 128 took 4.6 ms of a
    14.2 ms train step. As one matmul per output position plus 25 shifted adds the step took
    12.1 ms; this way 9.1-9.9 ms (10.8-11.4 ms for the former, alternating in one process;
    parameters equal to within 2e-9 after 3 steps)."""
    return _xla_conv(x, kernel, "VALID")


def _conv_valid_band_grad_fwd(x, kernel):
    return _xla_conv(x, kernel, "VALID"), (x, kernel)


def _conv_valid_band_grad_bwd(residuals, g):
    x, kernel = residuals
    kh, kw, c_in, c_out = kernel.shape
    n, out_h, out_w, _ = g.shape
    h, w = x.shape[1:3]
    dkernel = _conv_kernel_grad(x, g, kernel.shape, "VALID")
    if out_w * c_out * kh * w * c_in > _BAND_MAX:
        (dx,) = jax.vjp(lambda a: _xla_conv(a, kernel, "VALID"), x)[1](g)
        return dx, dkernel
    # band[(v, o), (i, b, c)] = kernel[i, b - v, c, o] where 0 <= b - v < kw: one output row's
    # gradient (out_w positions x c_out) times it gives, for each kernel row i, the input row's
    # gradient (w x c_in) that output row sends i rows down.
    shift = (jnp.arange(w) == jnp.arange(out_w)[:, None, None] + jnp.arange(kw)[:, None])
    band = jnp.einsum("vjb,ijco->voibc", shift.astype(kernel.dtype), kernel)
    rows = (g.reshape(n * out_h, out_w * c_out) @ band.reshape(out_w * c_out, kh * w * c_in))
    rows = rows.reshape(n, out_h, kh, w, c_in)
    dx = None
    for i in range(kh):
        term = jnp.pad(rows[:, :, i], ((0, 0), (i, h - out_h - i), (0, 0), (0, 0)))
        dx = term if dx is None else dx + term
    return dx, dkernel


_conv_valid_band_grad.defvjp(_conv_valid_band_grad_fwd, _conv_valid_band_grad_bwd)


class Conv(nn.Module):
    """A stride-1 2-D convolution with the parameters of `flax.linen.Conv` (kernel HWIO,
    bias), optionally followed by ReLU and 2x2 max pooling (`relu_pool`), lowered per
    backend: on CPU, a `relu_pool` block with at most `shift_max_in` input channels is
    `_conv_relu_pool_by_shifts`, and other convolutions `_conv_valid_band_grad`; other
    backends use XLA's convolution."""

    features: int
    kernel_size: tuple[int, int]
    padding: str = "SAME"
    kernel_init: Callable = nn.initializers.lecun_normal()
    relu_pool: bool = False
    shift_max_in: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init,
                            (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        on_cpu = jax.default_backend() == "cpu"
        if self.relu_pool and x.shape[-1] <= self.shift_max_in and on_cpu:
            return _conv_relu_pool_by_shifts(x, kernel, bias, self.padding)
        if on_cpu:
            if self.padding == "SAME":
                x = _same_padding(x, *self.kernel_size)
            y = _conv_valid_band_grad(x, kernel) + bias
        else:
            y = _xla_conv(x, kernel, self.padding) + bias
        return _max_pool_2x2(nn.relu(y)) if self.relu_pool else y


class LeNet5(nn.Module):
    """Classic LeNet-5: conv6@5x5(same) - pool - conv16@5x5(valid) - pool - 120 - 84 - out.

    He-normal hidden layers; the output layer starts at zero, so every seed starts from
    uniform predictions (loss ln 10). With a random output layer, He-normal and two
    max-pools gave initial logits of std 1.3-3.3, and SGD at lr 0.05, momentum 0.9, batch
    128 left seed 0 at chance on MNIST; zero-started, 8 of 8 seeds trained (97.6 % mean
    after one epoch vs 96.0 % for the 7 of 8 that trained before).
    """

    num_outputs: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no layer of LeNet-5 acts differently in training
        if x.ndim == 2:  # flat 784-pixel rows, e.g. from a CSV
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], side, side, 1)
        he = nn.initializers.he_normal()
        x = Conv(6, (5, 5), padding="SAME", kernel_init=he, relu_pool=True)(x)
        x = Conv(16, (5, 5), padding="VALID", kernel_init=he, relu_pool=True)(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(Dense(120, kernel_init=he)(x))
        x = nn.relu(Dense(84, kernel_init=he)(x))
        return Dense(self.num_outputs, kernel_init=nn.initializers.zeros_init())(x)


class Linear(nn.Module):
    """One dense layer: linear regression (MSE) or softmax regression (cross-entropy)."""

    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # one dense layer: nothing differs in training
        return Dense(self.num_outputs)(x.reshape((x.shape[0], -1)))


MODELS = ("mlp", "lenet5", "linear", "logistic")


def check_data(config: ModelConfig, task: str, input_shape: tuple[int, ...]) -> None:
    """Refuses a model the data cannot train, before any compile.

    `logistic` is the linear model held to classification (softmax regression); `linear`
    follows the data's task (least squares, or softmax on classes). `lenet5` needs images
    (or flat rows of a square's pixels) whose sides its two 2x2 pools halve evenly, with room
    for the 5x5 valid convolution between them: multiples of 4, at least 12 (MNIST: 28).
    """
    if config.name == "logistic" and task != "classification":
        raise UserError("model=logistic (logistic regression) needs class labels, but this "
                        f"dataset's task is {task}; use model=linear for linear regression, "
                        "or data.task=classification if the target holds classes")
    if config.name == "lenet5":
        if len(input_shape) == 1:
            side = int(round(input_shape[0] ** 0.5))
            sides = (side, side) if side * side == input_shape[0] else None
            shown = f"rows of {input_shape[0]} features"
        else:
            sides = tuple(input_shape[:2])
            shown = "images of " + "x".join(map(str, input_shape))
        if sides is None or any(s % 4 or s < 12 for s in sides):
            raise UserError(f"model=lenet5 needs images whose sides are multiples of 4 and at "
                            f"least 12 (28x28 for MNIST, or flat rows of 784 pixels), but this "
                            f"dataset has {shown}; use model=mlp or model=linear for it")


def build_model(config: ModelConfig, num_outputs: int) -> nn.Module:
    """Builds the model named by `config.name` with `num_outputs` outputs.

    Raises:
        UserError: for an unknown name, listing the valid ones.
    """
    if config.name == "mlp":
        return MLP(hidden=tuple(config.hidden), num_outputs=num_outputs,
                   activation=config.activation, dropout=config.dropout)
    if config.name == "lenet5":
        return LeNet5(num_outputs=num_outputs)
    if config.name in ("linear", "logistic"):
        return Linear(num_outputs=num_outputs)
    raise UserError(f"model.name={config.name!r} is not known; valid models: {', '.join(MODELS)}")


def count_params(params) -> int:
    """Total number of scalar parameters in a pytree."""
    return sum(int(jnp.size(p)) for p in jax.tree_util.tree_leaves(params))
