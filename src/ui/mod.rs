pub mod headless;
