mod common;

mod build;
mod docs;
mod harness_selftest;
mod install;
mod pipelines;
mod progress;
mod promote;
