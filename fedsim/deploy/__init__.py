"""Flower's deployment engine, as users run it: SuperLink and SuperNodes, TLS, node authentication.

One job per module: :mod:`~fedsim.deploy.processes` (free ports, process groups that are
always stopped), :mod:`~fedsim.deploy.certs` (a CA and the SuperLink's TLS certificate),
:mod:`~fedsim.deploy.nodeauth` (SuperNode authentication keys),
:mod:`~fedsim.deploy.flwr_cli` (Flower's command-line tools and the SuperLink connection),
:mod:`~fedsim.deploy.local` (``fedsim deploy local``: a whole deployment on loopback).
What a party's SuperNode reads from its node config is the client side's business
(:mod:`fedsim.clients.node_config`).
"""
