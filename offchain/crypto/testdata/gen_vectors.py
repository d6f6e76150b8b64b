#!/usr/bin/env python3
"""Independent reference implementation of the emrchain offchain/crypto formats.

This script re-implements, from the byte layouts in ../doc.go and with
pyca/cryptography instead of the Go standard library, the streaming file
format, key wrapping, FileKeyAAD and KEK envelopes. It was run ONCE to produce

  testdata/vectors.json                 known-answer vectors (pinned)
  testdata/fuzz/Fuzz*/...               seed corpora for the Go fuzz targets

The Go tests never regenerate these files; they only check the Go code against
them. Two implementations written separately agreeing on every byte is the
point: a vector that only the Go code produced would test nothing but itself.
Do not rerun this to "fix" a failing test: a mismatch means the on-disk
format changed, which breaks every record already stored. Bump the version
byte instead and add new vectors.

Produced with: python3 gen_vectors.py   (Python 3, cryptography 48.0.0)
"""

import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))


def hkdf_sha256(ikm, salt, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


# ---------------------------------------------------------------- stream ----

def stream_encrypt(key, salt, seg, aad, pt):
    assert len(key) == 32 and len(salt) == 16
    header = b"EMR1" + bytes([1]) + u32(seg) + salt
    okm = hkdf_sha256(key, salt, b"emrchain/v1/stream-segment-key", 36)
    gcm, prefix = AESGCM(okm[:32]), okm[32:]
    chunks = [pt[i:i + seg] for i in range(0, len(pt), seg)] or [b""]
    out = header
    for i, chunk in enumerate(chunks):
        final = i == len(chunks) - 1
        nonce = prefix + u64(i)
        a = header + u64(i) + bytes([1 if final else 0]) + aad
        out += gcm.encrypt(nonce, chunk, a)
    return out


# -------------------------------------------------------------- key wrap ----

def file_key_aad(patient_id, category, key_version):
    c = category.encode()
    return (b"emrchain/v1/file-key-aad" + u32(len(patient_id)) + patient_id
            + u32(len(c)) + c + u64(key_version))


def wrap_key(kek, nonce, key, aad):
    return bytes([1]) + nonce + AESGCM(kek).encrypt(
        nonce, key, b"emrchain/v1/wrapped-key" + bytes([1]) + aad)


# -------------------------------------------------------------- envelope ----

def x25519_pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def seal_envelope(recipient_pub, kek, patient_id, grantee, key_version, eph_priv, nonce):
    assert len(grantee) == 20
    eph_pub = x25519_pub(eph_priv)
    shared = X25519PrivateKey.from_private_bytes(eph_priv).exchange(
        X25519PublicKey.from_public_bytes(recipient_pub))
    key = hkdf_sha256(shared, None,
                      b"emrchain/v1/kek-envelope" + eph_pub + recipient_pub, 32)
    aad = (b"emrchain/v1/kek-envelope" + bytes([1]) + u32(len(patient_id))
           + patient_id + grantee + u64(key_version))
    env = bytes([1]) + eph_pub + nonce + AESGCM(key).encrypt(nonce, kek, aad)
    return env, shared, key


# --------------------------------------------------------------- vectors ----

def pattern(n):
    return bytes(i % 251 for i in range(n))


def seq(start, n):
    return bytes((start + i) & 0xFF for i in range(n))


def vectors():
    key = seq(0x00, 32)
    salt = seq(0xA0, 16)
    stream = []
    for name, seg, aad, pt in [
        ("empty file, default segment size", 65536, b"", b""),
        ("short file, default segment size", 65536, b"record-aad", b"hello, emrchain"),
        ("one full small segment", 16, b"aad", pattern(16)),
        ("3.5 small segments", 16, b"aad", pattern(56)),
        ("exact multiple of segment size", 32, b"", pattern(96)),
    ]:
        stream.append({
            "name": name, "key": key.hex(), "salt": salt.hex(), "segment_size": seg,
            "aad": aad.hex(), "plaintext": pt.hex(),
            "ciphertext": stream_encrypt(key, salt, seg, aad, pt).hex(),
        })
    # Large vector: plaintext byte i is i % 251; only the digest is pinned.
    n = 65536 * 2 + 100
    ct = stream_encrypt(key, salt, 65536, b"big", pattern(n))
    stream.append({
        "name": "2 full + 1 partial default segments", "key": key.hex(), "salt": salt.hex(),
        "segment_size": 65536, "aad": b"big".hex(), "plaintext_pattern_len": n,
        "ciphertext_len": len(ct), "ciphertext_sha256": hashlib.sha256(ct).hexdigest(),
    })

    fka = []
    for pid, cat, ver in [
        (b"patient-1", "lab-results", 1),
        (b"", "", 0),
        (b"\xaa" * 32, "radiation-dose", 2**64 - 1),
    ]:
        fka.append({"patient_id": pid.hex(), "category": cat, "key_version": str(ver),
                    "aad": file_key_aad(pid, cat, ver).hex()})

    kek = seq(0x40, 32)
    wrap = []
    for name, aad in [
        ("FileKeyAAD binding", file_key_aad(b"patient-1", "lab-results", 1)),
        ("empty aad", b""),
    ]:
        nonce = seq(0x60, 12)
        dk = seq(0x10, 32)
        wrap.append({"name": name, "kek": kek.hex(), "nonce": nonce.hex(), "key": dk.hex(),
                     "aad": aad.hex(), "wrapped": wrap_key(kek, nonce, dk, aad).hex()})

    env = []
    rpriv = seq(0x80, 32)
    epriv = seq(0xE0, 32)
    for name, pid, grantee, ver in [
        ("version 1 grant", b"patient-1", seq(0xC0, 20), 1),
        ("rotated key", b"\x00" * 32, seq(0x01, 20), 7),
    ]:
        nonce = seq(0x70, 12)
        e, shared, k = seal_envelope(x25519_pub(rpriv), kek, pid, grantee, ver, epriv, nonce)
        env.append({
            "name": name, "recipient_private": rpriv.hex(),
            "recipient_public": x25519_pub(rpriv).hex(),
            "ephemeral_private": epriv.hex(), "ephemeral_public": x25519_pub(epriv).hex(),
            "nonce": nonce.hex(), "kek": kek.hex(), "patient_id": pid.hex(),
            "grantee": grantee.hex(), "key_version": str(ver),
            "shared_secret": shared.hex(), "envelope_key": k.hex(), "envelope": e.hex(),
        })
    return {
        "comment": "Pinned known-answer vectors, produced once by gen_vectors.py (an "
                   "independent Python/pyca-cryptography implementation of doc.go). "
                   "Never regenerate: a mismatch means the format changed.",
        "stream": stream, "file_key_aad": fka, "wrap": wrap, "envelope": env,
    }


# ------------------------------------------------------------ fuzz seeds ----
# Fixed keys of the Go fuzz targets (fuzz_test.go must use the same values).

FUZZ_STREAM_KEY = seq(0x00, 32)
FUZZ_STREAM_AAD = b"emrchain fuzz aad"
FUZZ_KEK = seq(0x40, 32)
FUZZ_WRAP_AAD = file_key_aad(b"fuzz-patient", "lab-results", 3)
FUZZ_RECIPIENT = seq(0x80, 32)
FUZZ_PATIENT = b"fuzz-patient"
FUZZ_GRANTEE = seq(0xC0, 20)
FUZZ_KEY_VERSION = 3


def goquote(b):
    out = []
    for c in b:
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return '"' + "".join(out) + '"'


def write_seeds(target, seeds):
    d = os.path.join(HERE, "fuzz", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds:
        with open(os.path.join(d, name), "w") as f:
            f.write("go test fuzz v1\n[]byte(%s)\n" % goquote(data))


def flip(b, i):
    b = bytearray(b)
    b[i] ^= 0x01
    return bytes(b)


def fuzz_seeds():
    salt = seq(0x30, 16)
    k, a = FUZZ_STREAM_KEY, FUZZ_STREAM_AAD
    multi = stream_encrypt(k, salt, 16, a, pattern(56))  # segments of 32 bytes
    two = stream_encrypt(k, salt, 16, a, pattern(32))
    write_seeds("FuzzDecryptReader", [
        ("valid_empty", stream_encrypt(k, salt, 65536, a, b"")),
        ("valid_short", stream_encrypt(k, salt, 65536, a, b"hello, emrchain")),
        ("valid_multi_segment", multi),
        ("valid_exact_segments", two),
        ("valid_empty_small_segments", stream_encrypt(k, salt, 16, a, b"")),
        ("header_only", multi[:25]),
        ("truncated_header", multi[:10]),
        ("truncated_mid_segment", multi[:25 + 32 + 5]),
        ("truncated_at_boundary", multi[:25 + 64]),
        ("appended_garbage", multi + b"\x00"),
        ("reordered", multi[:25] + multi[57:89] + multi[25:57] + multi[89:]),
        ("bad_magic", b"EMR2" + multi[4:]),
        ("bad_version", multi[:4] + b"\x02" + multi[5:]),
        ("segment_size_zero", multi[:5] + u32(0) + multi[9:]),
        ("segment_size_huge", multi[:5] + u32(0xFFFFFFFF) + multi[9:]),
        ("bitflip_tag", flip(multi, len(multi) - 1)),
        ("empty_input", b""),
    ])

    nonce = seq(0x60, 12)
    w = wrap_key(FUZZ_KEK, nonce, seq(0x10, 32), FUZZ_WRAP_AAD)
    write_seeds("FuzzUnwrapKey", [
        ("valid", w),
        ("truncated", w[:-1]),
        ("extended", w + b"\x00"),
        ("version_2", b"\x02" + w[1:]),
        ("bitflip", flip(w, 20)),
        ("empty", b""),
    ])

    e, _, _ = seal_envelope(x25519_pub(FUZZ_RECIPIENT), FUZZ_KEK, FUZZ_PATIENT,
                            FUZZ_GRANTEE, FUZZ_KEY_VERSION, seq(0xE0, 32), seq(0x70, 12))
    write_seeds("FuzzOpenEnvelope", [
        ("valid", e),
        ("truncated", e[:-1]),
        ("extended", e + b"\x00"),
        ("version_2", b"\x02" + e[1:]),
        ("small_order_ephemeral", e[:1] + b"\x00" * 32 + e[33:]),
        ("bitflip", flip(e, 50)),
        ("empty", b""),
    ])


if __name__ == "__main__":
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump(vectors(), f, indent=1)
        f.write("\n")
    fuzz_seeds()
