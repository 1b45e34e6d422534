pub mod headless;
pub mod review;
pub mod tui;
