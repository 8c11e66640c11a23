# Mints the attack-vector tokens with PyJWT (an independent implementation) and prints them
# with the public keys as one JSON object. Run by tests/jwt/pyjwt.rs.
import base64, hashlib, hmac, json, os, time

import jwt
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

now = int(time.time())
rsa_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_k = ec.generate_private_key(ec.SECP256R1())
ed_k = ed25519.Ed25519PrivateKey.generate()
evil_k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
secret = os.urandom(32)


def pem(k):
    return k.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


base = {"iss": "https://idp.test", "aud": "tollgate", "sub": "user-1", "exp": now + 300,
        "iat": now, "scope": "read write"}


def claims(**kw):
    c = dict(base, **kw)
    return {k: v for k, v in c.items() if v is not None}


def rs(c=None, **headers):
    return jwt.encode(c or base, rsa_k, "RS256", headers={"kid": "rsa-1", **headers})


def hs_with_rsa_public_key(kid):
    # PyJWT refuses a PEM as HMAC secret (good), so this one attack is built by hand.
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(base).encode())
    mac = hmac.new(pem(rsa_k), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


good_rs = rs()
sig = good_rs.rsplit(".", 1)[1]
flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
evil_jwk = json.loads(RSAAlgorithm.to_jwk(evil_k.public_key()))
rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_k.public_key())) | {"kid": "rsa-1", "use": "sig"}
print(json.dumps({
    "rsa_pem": pem(rsa_k).decode(),
    "ec_pem": pem(ec_k).decode(),
    "ed_pem": pem(ed_k).decode(),
    "hs_secret": b64(secret),
    "rsa_jwk": rsa_jwk,
    "valid": {
        "rs256": good_rs,
        "es256": jwt.encode(base, ec_k, "ES256", headers={"kid": "ec-1"}),
        "eddsa": jwt.encode(base, ed_k, "EdDSA", headers={"kid": "ed-1"}),
        "hs256": jwt.encode(base, secret, "HS256", headers={"kid": "hs-1"}),
    },
    "invalid": {
        "alg_none": jwt.encode(base, None, "none"),
        "alg_none_with_kid": jwt.encode(base, None, "none", headers={"kid": "rsa-1"}),
        "rs_public_key_as_hs_secret": hs_with_rsa_public_key("rsa-1"),
        "rs_public_key_as_hs_secret_no_kid": hs_with_rsa_public_key(None),
        "expired": rs(claims(exp=now - 600)),
        "not_yet_valid": rs(claims(nbf=now + 600)),
        "wrong_iss": rs(claims(iss="https://evil.test")),
        "wrong_aud": rs(claims(aud="someone-else")),
        "missing_scope": rs(claims(scope="write")),
        "missing_exp": rs(claims(exp=None)),
        "unknown_kid": rs(kid="rsa-unknown"),
        "tampered_signature": good_rs.rsplit(".", 1)[0] + "." + flipped,
        "jku_injection": jwt.encode(base, evil_k, "RS256",
                                    headers={"kid": "rsa-1", "jku": "https://evil.test/jwks"}),
        "x5u_injection": jwt.encode(base, evil_k, "RS256",
                                    headers={"kid": "rsa-1", "x5u": "https://evil.test/c.pem"}),
        "embedded_jwk": jwt.encode(base, evil_k, "RS256", headers={"jwk": evil_jwk}),
        "signed_by_other_key": jwt.encode(base, evil_k, "RS256", headers={"kid": "rsa-1"}),
    },
}))
