#!/usr/bin/env python3
"""A real, small trainer in the shape of seed 000's ``train.py EPOCHS OPTIMIZER DROPOUT``.

A two-layer perceptron (64 → hidden → 10, ReLU, dropout, softmax) written in numpy, trained on
scikit-learn's bundled 8×8 digits (1,797 images, shipped with the package: nothing is
downloaded). It prints ``Test accuracy: X`` like the seed, plus Katib-style ``name=value``
lines per epoch (``epoch=3 loss=… train_accuracy=… val_accuracy=…``, the held-out quarter's accuracy
after each epoch: the learning curve early stopping judges), and writes ``checkpoint/`` and
``logs/`` under its output directory like seed 002: $KUBESWEEP_OUTPUT_DIR when set (the trial's
directory on the shared storage, output.share in docs/grid.md, which outlives the pod), else
$OUTPUT_DIR; there also ``metrics.json``, the learning curve and the final test metrics, and a
TensorBoard event file (``events.out.tfevents.*``: loss, train_accuracy and val_accuracy per epoch,
test_loss and test_accuracy at the last), so TensorBoard pointed at the experiment's directory
shows one run per trial (``kubesweep tensorboard``). The event file is written by the few lines of
``EventWriter`` below, with the standard library only: the trainer needs neither TensorFlow,
tensorboard nor tensorboardX (``--no-tensorboard`` writes none).

    python train.py 5 adam 0.5                  # seed 000 style (positional)
    python train.py --epochs 5 --optimizer adam --dropout 0.5 --lr 0.01   # seed 002 style
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pos", nargs="*", help="EPOCHS OPTIMIZER DROPOUT (seed 000 style)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--optimizer", choices=OPTIMIZERS)
    ap.add_argument("--dropout", type=float)
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default per optimizer)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epoch-seconds", type=float, default=0.0,
                    help="wait this long after each epoch, standing in for a larger model's epoch (benchmarks)")
    ap.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                    help="write no TensorBoard event file")
    ap.add_argument("--output-dir", default=os.environ.get("KUBESWEEP_OUTPUT_DIR") or os.environ.get("OUTPUT_DIR", "output"))
    args = ap.parse_args(argv)
    pos = list(args.pos)
    if len(pos) > 3:
        ap.error("at most three positional arguments: EPOCHS OPTIMIZER DROPOUT")
    if pos:
        args.epochs = int(pos[0])
    if len(pos) > 1:
        if pos[1] not in OPTIMIZERS:
            ap.error(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        args.optimizer = pos[1]
    if len(pos) > 2:
        args.dropout = float(pos[2])
    args.epochs = 5 if args.epochs is None else args.epochs
    args.optimizer = args.optimizer or "adam"
    args.dropout = 0.2 if args.dropout is None else args.dropout
    if args.epochs < 1 or not 0 <= args.dropout < 1:
        ap.error("epochs must be >= 1 and 0 <= dropout < 1")
    if args.lr is None:
        args.lr = {"sgd": 0.1, "momentum": 0.05, "adam": 0.003, "rmsprop": 0.002, "adagrad": 0.05}[args.optimizer]
    return args


class Optimizer:
    def __init__(self, kind: str, lr: float, shapes: list[tuple[int, ...]]):
        self.kind, self.lr, self.t = kind, lr, 0
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.kind == "sgd":
                p -= self.lr * g
            elif self.kind == "momentum":
                self.m[i] = 0.9 * self.m[i] + g
                p -= self.lr * self.m[i]
            elif self.kind == "adagrad":
                self.v[i] += g * g
                p -= self.lr * g / (np.sqrt(self.v[i]) + 1e-8)
            elif self.kind == "rmsprop":
                self.v[i] = 0.9 * self.v[i] + 0.1 * g * g
                p -= self.lr * g / (np.sqrt(self.v[i]) + 1e-8)
            else:  # adam
                self.m[i] = 0.9 * self.m[i] + 0.1 * g
                self.v[i] = 0.999 * self.v[i] + 0.001 * g * g
                m_hat = self.m[i] / (1 - 0.9**self.t)
                v_hat = self.v[i] / (1 - 0.999**self.t)
                p -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


# ------------------------------------------------------------------ TensorBoard event files
# An event file is a TFRecord file of ``Event`` protocol buffers (tensorflow/core/util/event.proto):
# each record is its length (uint64, little-endian), the masked CRC-32C of those 8 bytes, the
# bytes, and their masked CRC-32C. The first event names the file version; each scalar is an
# Event{wall_time, step, summary: Summary{value: [Value{tag, simple_value}]}}, which TensorBoard
# reads as the scalar plugin's data (what tensorboardX's add_scalar writes too).


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


class EventWriter:
    """Scalars into ``<logdir>/events.out.tfevents.<time>.<host>``, flushed after each call."""

    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")
        self._write(_field(1, 1, struct.pack("<d", time.time())) + _field(3, 2, b"brain.Event:2"))

    def _write(self, event: bytes) -> None:
        length = struct.pack("<Q", len(event))
        self._file.write(length + _masked(length) + event + _masked(event))
        self._file.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = b"".join(_field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
                           for tag, value in values.items())
        self._write(_field(1, 1, struct.pack("<d", time.time())) + _field(2, 0, _varint(step))
                    + _field(5, 2, summary))

    def close(self) -> None:
        self._file.close()


class NoWriter:
    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def forward(params, x, dropout, rng):
    w1, b1, w2, b2 = params
    h = np.maximum(x @ w1 + b1, 0.0)
    mask = None
    if rng is not None and dropout > 0:
        mask = (rng.random(h.shape) >= dropout) / (1.0 - dropout)
        h = h * mask
    logits = h @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return h, mask, p


def evaluate(params, x, y):
    _, _, p = forward(params, x, 0.0, None)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    return loss, float((p.argmax(axis=1) == y).mean())


def main(argv: list[str]) -> int:
    args = parse(argv)
    print("argv:", json.dumps(sys.argv[1:]), flush=True)
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=args.seed, stratify=y)

    params = [
        rng.normal(0, np.sqrt(2 / 64), (64, args.hidden)), np.zeros(args.hidden),
        rng.normal(0, np.sqrt(2 / args.hidden), (args.hidden, 10)), np.zeros(10),
    ]
    opt = Optimizer(args.optimizer, args.lr, [p.shape for p in params])
    ckpt_dir = os.path.join(args.output_dir, "checkpoint")
    log_dir = os.path.join(args.output_dir, "logs")
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    started = time.time()
    curve = []
    events = EventWriter(args.output_dir) if args.tensorboard else NoWriter()
    with open(os.path.join(log_dir, "train.log"), "w", encoding="utf-8") as log:
        for epoch in range(1, args.epochs + 1):
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), args.batch_size):
                idx = order[start : start + args.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                h, mask, p = forward(params, xb, args.dropout, rng)
                d = p
                d[np.arange(len(yb)), yb] -= 1
                d /= len(yb)
                w1, _, w2, _ = params
                g_w2, g_b2 = h.T @ d, d.sum(axis=0)
                dh = (d @ w2.T) * (h > 0)
                if mask is not None:
                    dh *= mask
                g_w1, g_b1 = xb.T @ dh, dh.sum(axis=0)
                opt.step(params, [g_w1, g_b1, g_w2, g_b2])
            loss, acc = evaluate(params, x_train, y_train)
            _, val_acc = evaluate(params, x_test, y_test)
            line = f"epoch={epoch} loss={loss:.4f} train_accuracy={acc:.4f} val_accuracy={val_acc:.4f}"
            print(line, flush=True)
            log.write(line + "\n")
            events.scalars(epoch, {"loss": loss, "train_accuracy": acc, "val_accuracy": val_acc})
            curve.append({"epoch": epoch, "loss": round(loss, 4), "train_accuracy": round(acc, 4),
                          "val_accuracy": round(val_acc, 4)})
            if args.epoch_seconds > 0:
                time.sleep(args.epoch_seconds)
        test_loss, test_acc = evaluate(params, x_test, y_test)
        log.write(f"test_loss={test_loss:.4f} test_accuracy={test_acc:.4f}\n")
        events.scalars(args.epochs, {"test_loss": test_loss, "test_accuracy": test_acc})
        events.close()
    np.savez(os.path.join(ckpt_dir, "model.npz"), *params)
    with open(os.path.join(ckpt_dir, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"epochs": args.epochs, "optimizer": args.optimizer, "dropout": args.dropout, "lr": args.lr,
                   "test_accuracy": test_acc, "seconds": round(time.time() - started, 3)}, f, sort_keys=True)
    with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"epochs": curve, "test_loss": round(test_loss, 4), "test_accuracy": round(test_acc, 4)}, f, indent=1)
    print("Test loss:", round(test_loss, 4))
    print("Test accuracy:", round(test_acc, 4), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
