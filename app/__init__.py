"""Switchboard: decides where a Vapi voice-AI call should be transferred."""

__version__ = "0.1.0"
