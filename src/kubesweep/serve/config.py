"""What one `kubesweep serve` process serves, and where from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubesweep.serve import auth
from kubesweep.sweep import Target, Workspace


@dataclass(frozen=True)
class ServeConfig:
    """The workspace whose jobs/ and results/ are listed, the cluster the sweeps run on, the
    server's own state directory (the sweeps it drives, the bodies submitted), the address it
    binds, the tokens that may call it and the image of the experiments' TensorBoard."""

    where: Workspace
    target: Target
    state_dir: Path
    host: str
    port: int
    tokens: auth.Tokens
    #: the TensorBoard image the tensorboard route runs (None: built here and pushed to localhost:5000)
    tensorboard_image: str | None = None

    @property
    def loopback(self) -> bool:
        return auth.loopback(self.host)
