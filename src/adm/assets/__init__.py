"""Weights shipped inside the wheel: the offline `digits` demo (see docs/digits.md).

Made by `adm recipe digits` and stored as float16 safetensors; the `digits` preset refers to them
through `package:adm.assets/...` artifacts, which are checked against their sha256 on use.
"""
