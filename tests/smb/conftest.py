"""The SMB tests' Samba fixtures (``samba``, ``smb_env``) live in tests/conftest.py."""
