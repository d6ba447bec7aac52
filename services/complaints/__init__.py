"""Complaints service: complaint intake, state machine, SLAs on a business calendar, escalation and satisfaction."""
