//! Authentication: tokens, passwords, users and their nested roles.

pub mod bootstrap;
pub mod builtin;
pub mod directory;
pub mod password;
pub mod roles;
pub mod token;
pub mod user;

pub use directory::{Directory, DirectorySettings, TokenFailure};
pub use user::{ResolvedUser, RoleRef};

#[cfg(test)]
mod tests;
