//! netns (to be written).
