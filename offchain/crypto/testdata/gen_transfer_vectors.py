#!/usr/bin/env python3
"""Independent reference implementation of emrchain's transfer-key envelope.

Like gen_vectors.py (whose helpers it imports), this re-implements from the
byte layout in ../doc.go, with pyca/cryptography, the envelope that seals a
fresh data key for one transfer (a replica sent from sidecar to sidecar) to
the recipient's X25519 key. It was run ONCE to produce

  testdata/transfer_vectors.json              known-answer vectors (pinned)
  testdata/fuzz/FuzzOpenTransferKey/...       seed corpus of the Go fuzz target

Do not rerun it to "fix" a failing test: a mismatch means the format changed.

Produced with: python3 gen_transfer_vectors.py   (Python 3, cryptography 48.0.0)
"""

import json
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gen_vectors import HERE, flip, hkdf_sha256, seq, u32, write_seeds, x25519_pub

LABEL = b"emrchain/v1/transfer-key"


def seal_transfer_key(recipient_pub, data_key, context, eph_priv, nonce):
    assert context
    eph_pub = x25519_pub(eph_priv)
    shared = X25519PrivateKey.from_private_bytes(eph_priv).exchange(
        X25519PublicKey.from_public_bytes(recipient_pub))
    key = hkdf_sha256(shared, None, LABEL + eph_pub + recipient_pub, 32)
    aad = LABEL + bytes([1]) + u32(len(context)) + context
    env = bytes([1]) + eph_pub + nonce + AESGCM(key).encrypt(nonce, data_key, aad)
    return env, shared, key


# Fixed values of the Go fuzz target (fuzz_test.go must use the same).
FUZZ_RECIPIENT = seq(0x80, 32)
FUZZ_TRANSFER_CONTEXT = b"/v1/replicas/fuzz-owner/fuzz-sum"


def vectors():
    rpriv, epriv = seq(0x80, 32), seq(0xE0, 32)
    out = []
    for name, context, data_key, nonce in [
        ("replica of a blob", b"/v1/replicas/" + b"ab" * 32 + b"/" + b"cd" * 32, seq(0x10, 32), seq(0x60, 12)),
        ("one-byte context", b"x", seq(0x20, 32), seq(0x61, 12)),
    ]:
        e, shared, k = seal_transfer_key(x25519_pub(rpriv), data_key, context, epriv, nonce)
        out.append({
            "name": name, "recipient_private": rpriv.hex(), "recipient_public": x25519_pub(rpriv).hex(),
            "ephemeral_private": epriv.hex(), "ephemeral_public": x25519_pub(epriv).hex(),
            "nonce": nonce.hex(), "data_key": data_key.hex(), "context": context.hex(),
            "shared_secret": shared.hex(), "envelope_key": k.hex(), "envelope": e.hex(),
        })
    return {"comment": "Produced by testdata/gen_transfer_vectors.py (pyca/cryptography). "
                       "Never regenerate: a mismatch means the format changed.",
            "transfer_key": out}


def fuzz_seeds():
    e, _, _ = seal_transfer_key(x25519_pub(FUZZ_RECIPIENT), seq(0x10, 32), FUZZ_TRANSFER_CONTEXT,
                                seq(0xE0, 32), seq(0x70, 12))
    write_seeds("FuzzOpenTransferKey", [
        ("valid", e),
        ("truncated", e[:-1]),
        ("extended", e + b"\x00"),
        ("version_2", b"\x02" + e[1:]),
        ("small_order_ephemeral", e[:1] + b"\x00" * 32 + e[33:]),
        ("bitflip", flip(e, 50)),
        ("kek_label", kek_envelope_of_same_key()),
        ("empty", b""),
    ])


def kek_envelope_of_same_key():
    # A KEK envelope of the same key, recipient, ephemeral key and nonce:
    # the labels keep it from opening as a transfer key.
    from gen_vectors import seal_envelope
    e, _, _ = seal_envelope(x25519_pub(FUZZ_RECIPIENT), seq(0x10, 32), b"fuzz-patient",
                            seq(0xC0, 20), 3, seq(0xE0, 32), seq(0x70, 12))
    return e


if __name__ == "__main__":
    with open(os.path.join(HERE, "transfer_vectors.json"), "w") as f:
        json.dump(vectors(), f, indent=1)
        f.write("\n")
    fuzz_seeds()
