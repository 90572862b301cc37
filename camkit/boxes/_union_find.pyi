def level_boxes(q: object, wanted: object, holes: bool) -> bytes:
    """Protocol boxes of the wanted level sets of a C-contiguous 2-D uint8 buffer ``q``, as
    int64 ``(x0, y0, x1, y1, first, last)`` records; ``wanted`` holds 256 bytes."""
