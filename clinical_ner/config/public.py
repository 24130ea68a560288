"""What of a resolved config may be saved and logged: everything but the keys that look like secrets."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

# a key is secret when its last word is one of these: `hf_token`, `api_key` go, `max_new_tokens` stays
SECRET_KEY = re.compile(r"(^|_)(key|token|secret|password)$", re.IGNORECASE)


def public_config(cfg) -> dict:
    """The resolved config with anything that looks like a secret removed (it is saved and logged)."""
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)

    def scrub(node):
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if not SECRET_KEY.search(str(k))}
        return [scrub(v) for v in node] if isinstance(node, list) else node

    return scrub(resolved)
