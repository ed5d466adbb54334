"""Hostile file names (security.md §5 case 11), under POSIX and Windows readings.

The shapes follow huggingface_hub's `_validate_relative_filename` (PR #4540): traversal,
absolute, drive, drive-relative, root-relative and UNC names, and nested variants.
"""

UNSAFE_FILENAMES = [
    "../../etc/passwd",
    "..",
    "../x",
    "a/../../x",
    "a/..",
    "/etc/passwd",
    "//server/share/x",
    "C:\\Windows\\System32\\x.dll",
    "C:/Windows/x",
    "D:rel",
    "sub/D:rel",
    "\\\\host\\share\\x",
    "\\evil",
    "sub\\..\\..\\x",
    "..\\..\\x",
    "a//b",
    "a/./b",
    "./a",
    "a/",
    "",
    "nul\x00byte",
    "line\nbreak",
    "x" * 300,
    "a/" + "b" * 256,
]

SAFE_FILENAMES = [
    "config.json",
    "sub/dir/nested file.txt",
    "1_Pooling/config.json",
    ".gitattributes",
    "données/日本語.txt",
    "a..b",
    "...",
    "weird name (1).bin",
]
