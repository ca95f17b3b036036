"""The official Polos SDK's ``polos.features`` package: ``from polos.features import events``."""
