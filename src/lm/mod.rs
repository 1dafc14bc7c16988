//! The seed's Penn Treebank language model.
