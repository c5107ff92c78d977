mod common;

mod build;
mod harness_selftest;
mod install;
mod promote;
