"""dialgw: an outbound-call gateway in front of a FreeSWITCH pool."""

__version__ = "0.1.0"
