"""Long videos: 4D Gaussians trained streamed through a temporal Gaussian hierarchy, memory flat in the video's
length: `splat4d reconstruct VIDEO_INPUT -o OUT --pipeline long`."""

from pipelines.long_video.config import PRESETS as PRESETS
from pipelines.long_video.config import LongVideoConfig as LongVideoConfig
from pipelines.long_video.config import StreamingConfig as StreamingConfig
from pipelines.long_video.pipeline import HIERARCHY as HIERARCHY
from pipelines.long_video.pipeline import STORE as STORE
from pipelines.long_video.pipeline import StreamedPipeline as StreamedPipeline
from pipelines.long_video.pipeline import load as load
from pipelines.long_video.pipeline import train as train
