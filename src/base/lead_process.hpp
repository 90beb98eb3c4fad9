#pragma once
// Which process speaks for the whole job, for a warning every rank would repeat
// (each loads the same model file). A process on its own speaks for itself;
// dist installs the MPI answer (rank 0 of MPI_COMM_WORLD while MPI is up), so
// layers below it need not know MPI.
namespace tpinfer {

void set_lead_process_check(bool (*check)());
bool is_lead_process();

}  // namespace tpinfer
