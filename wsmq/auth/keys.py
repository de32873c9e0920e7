"""Public keys that verify x-tokens, each with the one algorithm its type allows.

The algorithm comes from the key, never from the token: an RSA key verifies RS256 only, an EC
P-256 key ES256 only, an Ed25519 or Ed448 key EdDSA only. A token whose ``alg`` header says anything
else (``none``, ``HS256`` MACed with the public key's PEM bytes, ``ES256`` for an RSA key) is
refused by pyjwt because it is not in ``algorithms=[key.algorithm]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

#: What a verification key may be.
PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
MIN_RSA_BITS = 2048
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class VerificationKey:
    """A public key and the one JWT algorithm it verifies.

    Attributes:
        key: the cryptography public key object (what pyjwt's ``decode`` takes).
        algorithm: ``RS256``, ``ES256``, ``ES384``, ``ES512`` or ``EdDSA``.
        kid: the key id (JWKS keys; ``None`` for a PEM file or a JWK without one).
    """

    key: PublicKey
    algorithm: str
    kid: str | None = None


def public_half(key: object) -> object:
    """A private key's public key; any other object unchanged (a JWKS should publish only
    public halves, but one that leaks a private key still verifies with its public one)."""
    private = (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
    )
    return key.public_key() if isinstance(key, private) else key


def pinned_algorithm(key: object) -> str:
    """The algorithm a JWKS key of this type verifies; :class:`ValueError` for keys wsmq does
    not accept (RSA under 2048 bits, curves other than P-256/384/521, X25519, ...)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise ValueError(f"EC curve {key.curve.name} is not supported")
        return algorithm
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise ValueError(f"{type(key).__name__} cannot verify x-tokens")


def key_fits(key: object, algorithm: str) -> bool:
    """Whether a configured ``algorithm`` belongs to this key's type (a PEM key file may also
    be used with RS384/RS512/PS*, as before JWKS support)."""
    if isinstance(key, rsa.RSAPublicKey):
        return algorithm[:2] in {"RS", "PS"} and key.key_size >= MIN_RSA_BITS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_ALGORITHMS.get(key.curve.name) == algorithm
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return algorithm == "EdDSA"
    return False


def load_public_pem(path: str | Path, algorithm: str) -> VerificationKey:
    """The public key of a PEM file (a public key, or a private key whose public half is used),
    checked against the configured ``algorithm``; :class:`ValueError` when it does not fit."""
    data = Path(path).read_bytes()
    try:
        key: object = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = public_half(serialization.load_pem_private_key(data, password=None))
        except (ValueError, TypeError):
            raise ValueError(f"{path} holds no PEM public or private key") from None
    if not key_fits(key, algorithm):
        raise ValueError(
            f"{path} holds a {type(key).__name__.removeprefix('_')}, which cannot verify "
            f"{algorithm}: the algorithm is pinned by the key type"
        )
    assert isinstance(key, PublicKey)
    return VerificationKey(key, algorithm)
