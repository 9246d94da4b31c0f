"""Unit tests of the sans-I/O protocol layer (myrouter.protocol), with byte fixtures captured from MariaDB."""
