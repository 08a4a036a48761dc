"""Deliverable plans: the fluence each beam should deliver next to what its leaves deliver."""

from __future__ import annotations

from atp.viz.core import pyplot


def plot_fluences(plan, *, max_beams: int = 9):
    """Optimized (left) and delivered (right) MU per fraction of the first ``max_beams``
    beams of an `atp.delivery.DeliverablePlan` (an arc: summed over its directions).
    Returns the figure.

    Parameters
    ----------
    plan : atp.delivery.DeliverablePlan
        The sequenced plan (its beams and machine).
    max_beams : int, optional
        Most beams drawn, one row each; default 9.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (save it with `atp.viz.save_figure`).
    """
    from atp.delivery.fluence import BeamletGrid, delivered_fluence

    plt = pyplot()
    beams = plan.beams[:max_beams]
    fig, axes = plt.subplots(len(beams), 2, figsize=(6, 2.2 * len(beams)), squeeze=False)
    for ax, seq in zip(axes, beams, strict=True):
        grid = BeamletGrid(*seq.grid)
        delivered = delivered_fluence(seq, plan.machine, grid)[0].sum(axis=0)
        extent = (grid.u_edges_mm[0], grid.u_edges_mm[-1], grid.v_edges_mm[0],
                  grid.v_edges_mm[-1])
        for a, img, title in ((ax[0], seq.info.get("target_map"), "optimized"),
                              (ax[1], delivered, "delivered")):
            a.set_axis_off()
            if img is None:
                continue
            im = a.imshow(img.T, origin="lower", cmap="viridis", extent=extent)
            a.set_title(f"{seq.name} {title} (leaves move left-right)", fontsize=8)
            fig.colorbar(im, ax=a, fraction=0.046, label="MU / fraction")
    fig.tight_layout()
    return fig
