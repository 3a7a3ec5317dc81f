//! RabbitMQ bus through lapin (being written).
