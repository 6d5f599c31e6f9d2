"""The kernelspecs this server offers notebooks: the local Jupyter kernelspecs (what
`jupyter kernelspec list` shows), or the gateway's when kernels run on one."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from jupyter_client.kernelspec import KernelSpecManager

from collab.config import Settings
from collab.errors import ApiError


def _local() -> list[dict[str, Any]]:
    found = KernelSpecManager().get_all_specs()
    return [
        {
            "name": name,
            "display_name": str(entry.get("spec", {}).get("display_name") or name),
            "language": str(entry.get("spec", {}).get("language") or ""),
        }
        for name, entry in found.items()
    ]


async def _gateway(url: str, token: str | None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=20) as http:
        r = await http.get("/api/kernelspecs")
        r.raise_for_status()
        body = r.json()
    return [
        {
            "name": name,
            "display_name": str(entry.get("spec", {}).get("display_name") or name),
            "language": str(entry.get("spec", {}).get("language") or ""),
        }
        for name, entry in (body.get("kernelspecs") or {}).items()
    ]


async def kernelspecs(settings: Settings) -> dict[str, Any]:
    """{"default": name, "kernelspecs": [{name, display_name, language}]}, by display name."""
    try:
        if settings.kernel_gateway_url:
            specs = await _gateway(settings.kernel_gateway_url, settings.kernel_gateway_token)
        else:
            specs = await asyncio.to_thread(_local)
    except Exception:
        raise ApiError("kernel_failed", "the kernelspecs could not be listed", 500) from None
    specs.sort(key=lambda s: (s["display_name"].lower(), s["name"]))
    return {"default": settings.kernel_default_name, "kernelspecs": specs}


async def find(settings: Settings, name: str) -> dict[str, Any]:
    for spec in (await kernelspecs(settings))["kernelspecs"]:
        if spec["name"] == name:
            return dict(spec)
    raise ApiError("no_such_kernel", f"this server offers no kernel named {name!r}", 404)
