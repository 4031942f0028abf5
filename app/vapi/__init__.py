"""Vapi's messages: the destination request, the conversation in it, earlier transfers, and Vapi's schemas."""
