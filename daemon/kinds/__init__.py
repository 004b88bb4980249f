"""Target kinds: for each ``kind:`` a config model, an actuator factory, its permissions and
its ``explain`` lines (``KindSpec``). Adding a kind touches its own module plus one line in
``daemon.kinds.registry``; nothing else in the daemon names a kind."""

# The settings package builds its target union from the kinds, and each kind's model extends
# ``daemon.settings.target_base``: loading the settings first, whichever side is imported
# first, lets both finish (a kind module imported alone would otherwise meet a half-built
# ``daemon.settings`` mid-cycle).
import daemon.settings  # noqa: F401
