"""Motion composition: head pose, blinks and idle motion on top of a driver's mouth motion."""
