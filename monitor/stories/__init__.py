"""Stories: one event, however many copies of it arrive (syndication, edits, translations).

`StoryStage` places each scored article in a story (monitor/stories/stage.py); `StoryIndex` is the online
clusterer it uses (monitor/stories/cluster.py). The tables are written through `monitor.store.stories`.
"""

from monitor.stories.cluster import Match, Member, StoryIndex, Thresholds
from monitor.stories.stage import StoryStage

__all__ = ["Match", "Member", "StoryIndex", "StoryStage", "Thresholds"]
