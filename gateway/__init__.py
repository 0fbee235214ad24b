"""The HTTP gateway: the native Segment-compatible API and the five vendor formats."""

from sluice.gateway.app import create_app

__all__ = ["create_app"]
