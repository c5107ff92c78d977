mod common;

mod build;
mod harness_selftest;
mod install;
mod pipelines;
mod promote;
