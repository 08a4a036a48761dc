"""PNG bytes without metadata, and what a figure says, for the review packets.

A packet embeds its images as data URIs: nothing in a file but pixels (no software tag,
no title), and every text drawn in a figure can be listed for the blinding tests.
"""

from __future__ import annotations

import io

from atp.viz.core import pyplot


def png_bytes(fig, *, dpi: int = 80) -> bytes:
    """The figure as PNG bytes with no text chunks (matplotlib's software tag removed).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is closed afterwards.
    dpi : int, optional
        Resolution (dots per inch); default 80.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


def png_text_chunks(data: bytes) -> list[bytes]:
    """The tEXt/zTXt/iTXt chunk payloads of a PNG (what a viewer shows as metadata).

    Parameters
    ----------
    data : bytes
        A PNG file's content; ValueError when it is not a PNG.

    Returns
    -------
    list of bytes
        The raw payloads, in file order (empty for a clean PNG).
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            out.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return out


def figure_strings(fig) -> list[str]:
    """Every text drawn in a figure (titles, labels, ticks, legends), for blinding tests.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is drawn first so that tick labels exist.

    Returns
    -------
    list of str
        The non-empty texts.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]

