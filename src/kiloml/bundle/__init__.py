"""Signed, versioned model bundles (a product package beside kiloml.report: it takes stage
objects, a ``DeploySpec``, and builds on kiloml.deploy's model slots; kiloml.workflow and the
CLI call it)::

    make_bundle(spec, key, version, counter=None) -> bytes     COSE_Sign1 bundle
    read_bundle(data) -> dict                                   content, signature NOT checked
    verify_bundle(data, public_key, project=, min_counter=, board=) -> dict
    generate_key(kind) / load_private_key(path) / load_public_key(path)
    sign_mcuboot(...)                                           firmware image via imgtool
"""

from __future__ import annotations

from kiloml.bundle.envelope import (KEY_TYPES, SignatureError, generate_key, key_id,
                                    load_private_key, load_public_key, private_pem,
                                    public_pem)
from kiloml.bundle.model import (make_bundle, read_bundle, summary, verify_bundle,
                                 version_counter)

__all__ = ["KEY_TYPES", "SignatureError", "generate_key", "key_id", "load_private_key",
           "load_public_key", "make_bundle", "private_pem", "public_pem", "read_bundle",
           "summary", "verify_bundle", "version_counter"]
