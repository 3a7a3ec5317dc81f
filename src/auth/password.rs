//! Password hashing (bcrypt, `$2a$`/`$2b$` as the reference stores them). Both calls
//! are CPU-heavy by design; callers run them off the actor threads.

pub fn verify(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

pub fn hash(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash(password, cost).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifies_reference_style_hashes() {
        let hash = super::hash("pw", 4).unwrap();
        assert!(super::verify("pw", &hash));
        assert!(!super::verify("other", &hash));
        // A `$2a$` hash as bcryptjs (the reference) writes them.
        let two_a = hash.replacen("$2b$", "$2a$", 1);
        assert!(super::verify("pw", &two_a));
        assert!(!super::verify("pw", "not a hash"));
    }
}
