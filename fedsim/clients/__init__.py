"""The client side of the federation: what each party computes and shares."""

from fedsim.clients.client_app import make_client_app
from fedsim.clients.release import anonymize, client_data

__all__ = ["make_client_app", "anonymize", "client_data"]
