"""The offline demo: recorded feeds, a local feed server and `monitor demo` (monitor/cli/_demo.py)."""
