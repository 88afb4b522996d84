"""Field-device drivers and protocol simulators: Modbus TCP signal controllers and OPC UA
variable message signs. Drivers publish device facts and faults as events (see ``controllers``)."""
