"""posture-connector: a step-ca webhook that lets only your managed devices get certificates."""

from connector.app import create_app

__all__ = ["create_app"]
